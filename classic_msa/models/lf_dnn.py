"""LF-DNN: late fusion of per-modality subnetworks, MMSA's plain reference baseline.

Williams et al. 2018 ("Recognizing Emotions in Video Using Multimodal DNN Feature Fusion") as
benchmarked by MMSA (`models/singleTask/LF_DNN.py`): each modality is reduced to one vector by its
own subnetwork, the three vectors are concatenated, and an MLP maps the concatenation to the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from classic_msa.blocks.subnets import ModalitySubNets
from classic_msa.data import FeatureBatch
from classic_msa.model import FeatureModel, register_model


@dataclass
class LFDNNConfig:
    """LF-DNN hyper-parameters; input dims default to unaligned MOSI (filled from data by the runner).

    The defaults are MMSA's MOSI ones (`config_regression.json`, `lf_dnn`): hidden dims text 128,
    audio 16, video 128, `text_out` 256, `post_fusion_dim` 128, every dropout 0.2 (MMSA trains
    them with Adam, lr 1e-3, weight decay 0.01, batch 128, early stop 8).
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    text_hidden: int = 128
    audio_hidden: int = 16
    vision_hidden: int = 128
    text_out: int = 256
    post_fusion_dim: int = 128
    text_dropout: float = 0.2
    audio_dropout: float = 0.2
    vision_dropout: float = 0.2
    post_fusion_dropout: float = 0.2


def post_fusion_mlp(input_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """MMSA's post-fusion layers: dropout, Linear + ReLU, Linear + ReLU, Linear to one output."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 1))


@register_model("lf_dnn")
class LFDNN(FeatureModel):
    """LF-DNN on MMSA features. One loss term, "task": L1, as MMSA's regression trainer.

    Parts (`classic_msa.blocks.subnets`), and what each does with length-1 sequences (utterance
    level features, N x 1 x D) and with missing data (masked steps and dropped modalities are
    zeros; lengths are kept, and a length of 0 is allowed):
    - Audio, vision: the mean over the real steps (MMSA averages over the padded length, which
      shrinks short sequences towards 0), then BatchNorm1d, dropout and three Linear + ReLU layers.
      Length 1: the mean is the step. Masked steps enter the mean as zeros; a dropped modality
      is a zero vector; length 0 gives a zero vector (no 0 / 0), so BatchNorm sees what it sees
      for a dropped modality. A training batch of one sample is normalised with the running
      statistics (BatchNorm cannot estimate a variance from one row).
    - Text: rows other than word tokens ([CLS]/[SEP] of BERT features, which were computed from
      the unmasked sentence) are zeroed, then a unidirectional LSTM over the real steps (packed),
      its final hidden state, dropout, and one Linear to `text_out`. Length 1: one LSTM cell
      update from the zero state. A dropped text is all zeros in; length 0 is read as one zero
      step, so the output is the network's fixed "no text" vector. MMSA applies no text dropout
      with a one-layer LSTM (its TextSubNet reuses the LSTM's zeroed dropout); here
      `text_dropout` applies to the final state.
    - Fusion: concatenation of (audio, vision, text), MMSA's order: audio_hidden + vision_hidden
      + text_out dims.
    - Post-fusion: dropout, two Linear + ReLU layers of `post_fusion_dim`, Linear to the
      prediction (unbounded, as MMSA's LF-DNN).
    """

    config_class = LFDNNConfig

    def __init__(self, config: LFDNNConfig) -> None:
        super().__init__(config)
        c = config
        self.subnets = ModalitySubNets.from_config(c)
        self.post_fusion = post_fusion_mlp(c.audio_hidden + c.vision_hidden + c.text_out, c.post_fusion_dim,
                                           c.post_fusion_dropout)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.subnets.parameter_groups(self.post_fusion)

    def fuse(self, batch: FeatureBatch) -> Tensor:
        """The late-fusion vector: B x (audio_hidden + vision_hidden + text_out)."""
        return torch.cat(self.subnets(batch), dim=-1)

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        pred = self.post_fusion(self.fuse(batch)).squeeze(-1)
        return {"pred": pred, "task": F.l1_loss(pred, batch.labels)}
