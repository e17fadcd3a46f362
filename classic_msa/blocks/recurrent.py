"""Recurrent sequence encoders."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLSTMEncoder(nn.Module):
    """A bidirectional LSTM over the real steps of padded sequences (packed, so padding never
    enters the state); returns B x 2 * hidden.

    `pooling="last"`: the final forward and backward states of the top layer (MMSA's subnets).
    `pooling="mean"`: the mean of the top layer's outputs over the real steps; better when the
    sentiment cue sits mid-sequence and the ends are silence or still frames, which the final
    states of a small LSTM mostly remember. Rows of length 0 are read as length 1 (their first,
    zero, step), so a fully missing modality still yields a defined state.
    """

    def __init__(self, input_dim: int, hidden: int, *, num_layers: int = 1, dropout: float = 0.0,
                 pooling: Literal["last", "mean"] = "mean") -> None:
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.pooling = pooling
        self.output_dim = 2 * hidden

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, (state, _) = self.lstm(packed)
        if self.pooling == "last":
            return torch.cat([state[-2], state[-1]], dim=-1)
        padded, _ = pad_packed_sequence(outputs, batch_first=True)   # zeros beyond each length
        return padded.sum(dim=1) / lengths.to(padded.device, padded.dtype)[:, None]
