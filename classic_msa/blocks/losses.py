"""Decorrelation losses between two representations of the same samples."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def orthogonality_loss(a: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-sample orthogonality of layer-normalised representations.

    a, b: B x D vectors or B x L x D sequences. Each vector is layer-normalised (zero mean,
    unit variance over D, no affine), so (â · b̂) / D is the Pearson correlation of the two
    feature vectors. Per sample the cross-correlation matrix C = Â B̂ᵀ / D (L_a x L_b; 1 x 1
    for vectors) is formed; the loss is the batch mean of its squared Frobenius norm. It is 0
    exactly when every element of a is orthogonal to every element of b of the same sample as
    zero-mean vectors, and at most L_a * L_b.
    """
    if a.shape[0] != b.shape[0] or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} do not match in batch and width")
    dim = a.shape[-1]
    a_hat = F.layer_norm(a, (dim,), eps=eps)
    b_hat = F.layer_norm(b, (dim,), eps=eps)
    if a.dim() == 2:
        return ((a_hat * b_hat).sum(-1) / dim).pow(2).mean()
    correlation = a_hat @ b_hat.transpose(-1, -2) / dim
    return correlation.pow(2).sum(dim=(-1, -2)).mean()


def difference_loss(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """MISA's difference loss: mean squared entry of the cross-covariance Âᵀ B̂ (D_a x D_b).

    a: B x D_a, b: B x D_b. Each is centred over the batch and its rows L2-normalised; the loss
    is 0 when the centred feature columns of a are orthogonal to those of b across the batch
    (e.g. private and shared subspaces carry uncorrelated information).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"expected B x D_a and B x D_b, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True) + eps)
    b = b / (b.norm(dim=1, keepdim=True) + eps)
    return (a.T @ b).pow(2).mean()
