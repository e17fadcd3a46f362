"""MMSA's pre-fusion subnetworks (shared by LF-DNN and TFN) and the masked time average they read."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from classic_msa.data import FeatureBatch


def masked_mean(x: Tensor, lengths: Tensor) -> Tensor:
    """The mean of each B x L x D sequence over its first `lengths[b]` steps: B x D.

    A row of length 1 is its one step; a row of length 0 averages nothing and is all zeros (no
    0 / 0). Zeroed (masked) steps inside the length count as zeros, so they pull the mean to 0.
    """
    steps = torch.arange(x.shape[1], device=x.device)
    mask = (steps[None] < lengths.to(x.device)[:, None]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)


class VectorSubNet(nn.Module):
    """MMSA's `SubNet`: BatchNorm1d, dropout, three Linear + ReLU layers; B x input_dim -> B x hidden.

    BatchNorm needs two rows to estimate batch statistics, so a training batch of one row is
    normalised with the running statistics instead (what eval mode does) rather than failing.
    """

    def __init__(self, input_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(input_dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, hidden), nn.ReLU())
        self.output_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            norm = self.norm
            normed = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        else:
            normed = self.norm(x)
        return self.layers(self.dropout(normed))


class TextSubNet(nn.Module):
    """MMSA's `TextSubNet`: a unidirectional LSTM, the top layer's final hidden state, dropout, one
    Linear; B x L x input_dim with lengths -> B x output_dim.

    The LSTM runs over the real steps only (packed; MMSA runs it over the padding too), so a
    sequence of length 1 is one cell update from the zero state. Rows of length 0 are read as
    length 1 (their first, zero, step), so a fully missing text still yields a defined state.
    """

    def __init__(self, input_dim: int, hidden: int, output_dim: int, *, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, output_dim)
        self.output_dim = output_dim

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, (state, _) = self.lstm(packed)
        return self.linear(self.dropout(state[-1]))


def non_word_rows_zeroed(batch_text: Tensor, text_tokens: Tensor) -> Tensor:
    """Text feature rows with everything but word tokens zeroed ([CLS]/[SEP] of BERT features).

    The [CLS]/[SEP] rows of precomputed BERT features were computed from the unmasked sentence
    and missingness masks word rows only, so reading them would leak masked words.
    """
    return batch_text * text_tokens[:, : batch_text.shape[1], None].to(batch_text.dtype)



class ModalitySubNets(nn.Module):
    """The pre-fusion stage of MMSA's LF-DNN and TFN: one B x d vector per modality.

    Audio and vision: `masked_mean` over the real steps, then a `VectorSubNet`. Text: `non_word_rows_zeroed`,
    then a `TextSubNet`. `forward` returns (audio, vision, text), MMSA's fusion order.
    """

    def __init__(self, *, text_dim: int, audio_dim: int, vision_dim: int, text_hidden: int, text_out: int,
                 audio_hidden: int, vision_hidden: int, text_dropout: float, audio_dropout: float,
                 vision_dropout: float) -> None:
        super().__init__()
        self.audio = VectorSubNet(audio_dim, audio_hidden, audio_dropout)
        self.vision = VectorSubNet(vision_dim, vision_hidden, vision_dropout)
        self.text = TextSubNet(text_dim, text_hidden, text_out, dropout=text_dropout)

    @classmethod
    def from_config(cls, c: Any) -> ModalitySubNets:
        """From a model config holding the subnets' fields (LF-DNN's and TFN's configs)."""
        return cls(text_dim=c.text_dim, audio_dim=c.audio_dim, vision_dim=c.vision_dim, text_hidden=c.text_hidden,
                   text_out=c.text_out, audio_hidden=c.audio_hidden, vision_hidden=c.vision_hidden,
                   text_dropout=c.text_dropout, audio_dropout=c.audio_dropout, vision_dropout=c.vision_dropout)

    def parameter_groups(self, post_fusion: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The groups of a subnets-then-fusion model: one per modality subnet and the post-fusion head."""
        return {"text": list(self.text.parameters()), "audio": list(self.audio.parameters()),
                "vision": list(self.vision.parameters()), "post_fusion": list(post_fusion.parameters())}

    def forward(self, batch: FeatureBatch) -> tuple[Tensor, Tensor, Tensor]:
        audio = self.audio(masked_mean(batch.features["audio"], batch.lengths["audio"]))
        vision = self.vision(masked_mean(batch.features["vision"], batch.lengths["vision"]))
        text = self.text(non_word_rows_zeroed(batch.features["text"], batch.text_tokens), batch.lengths["text"])
        return audio, vision, text
