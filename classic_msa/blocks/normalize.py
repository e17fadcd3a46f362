"""Per-dimension input standardisation with statistics fitted on the training set."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class FeatureStandardizer(nn.Module):
    """(x - mean) / std per feature dimension; the statistics are buffers (saved with the model).

    Fitted on the real (unpadded) steps of complete training data, so raw feature scales
    (COVAREP, FACET, or near-constant synthetic colour means) do not decide how fast a
    recurrent or attention encoder learns. Zeroed (missing) steps map to the constant
    -mean / std: still a fixed marker, an affine change of the input only.
    """

    def __init__(self, dim: int, min_std: float = 1e-4) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, steps: np.ndarray) -> None:
        """steps: S x D, the real steps of every training sequence stacked."""
        if steps.ndim != 2 or steps.shape[1] != self.mean.numel() or len(steps) == 0:
            raise ValueError(f"expected a non-empty S x {self.mean.numel()} array, got shape {steps.shape}")
        values = torch.as_tensor(steps, dtype=torch.float64)
        self.mean.copy_(values.mean(0).to(self.mean.dtype))
        self.std.copy_(values.std(0, unbiased=False).clamp_min(self.min_std).to(self.std.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std
