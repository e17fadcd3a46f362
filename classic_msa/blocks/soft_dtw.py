"""Differentiable soft-DTW (Cuturi & Blondel, 2017), vectorised over anti-diagonals and the batch.

R[i, j] = C[i-1, j-1] + softmin_γ(R[i-1, j-1], R[i-1, j], R[i, j-1]), R[0, 0] = 0 and the rest of
row/column 0 = +inf; soft-DTW = R[n, m]. All cells with i + j = k depend only on diagonals
k-1 and k-2, so one step computes a whole anti-diagonal for the whole batch: n + m - 1 vector
steps instead of n * m scalar ones. Gradients come from autograd through those steps (memory
O(B * n * (n + m))). softmin_γ(a) = -γ log Σ exp(-a / γ); as γ -> 0 this is exact DTW.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A finite stand-in for +inf: keeps logsumexp and its gradient finite on unreachable cells.
_BIG = 1e10


def soft_dtw(x: Tensor, y: Tensor, gamma: float = 1.0, *, x_lengths: Tensor | None = None,
             y_lengths: Tensor | None = None) -> Tensor:
    """Soft-DTW between sequences under the squared Euclidean cost.

    x: (B x) n x D, y: (B x) m x D. With lengths, row b uses only its first x_lengths[b] and
    y_lengths[b] steps (padding never enters a path). Returns a B vector (a scalar for
    unbatched input). The value of a sequence with itself is not 0 (it can be negative);
    it is the minimum only in the γ -> 0 limit.
    """
    unbatched = x.dim() == 2
    if unbatched:
        x, y = x[None], y[None]
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"expected (B x) n x D and (B x) m x D, got {tuple(x.shape)} and {tuple(y.shape)}")
    cost = (x[:, :, None, :] - y[:, None, :, :]).pow(2).sum(-1)
    out = soft_dtw_from_cost(cost, gamma, x_lengths=x_lengths, y_lengths=y_lengths)
    return out[0] if unbatched else out


def soft_dtw_from_cost(cost: Tensor, gamma: float = 1.0, *, x_lengths: Tensor | None = None,
                       y_lengths: Tensor | None = None) -> Tensor:
    """Soft-DTW from a B x n x m cost matrix (any pairwise cost). Returns a B vector."""
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    batch, n, m = cost.shape
    device, dtype = cost.device, cost.dtype
    x_lengths = torch.full((batch,), n, device=device) if x_lengths is None else x_lengths.to(device)
    y_lengths = torch.full((batch,), m, device=device) if y_lengths is None else y_lengths.to(device)
    if bool((x_lengths < 1).any() | (y_lengths < 1).any() | (x_lengths > n).any() | (y_lengths > m).any()):
        raise ValueError("soft-DTW lengths must lie in [1, n] and [1, m]")

    # Diagonal k is stored as a B x (n + 1) tensor indexed by i (j = k - i).
    rows = torch.arange(1, n + 1, device=device)
    big = torch.full((batch, 1), _BIG, device=device, dtype=dtype)
    diagonals = [torch.cat([torch.zeros_like(big), big.expand(batch, n)], dim=1),  # k = 0
                 big.expand(batch, n + 1)]                                          # k = 1
    for k in range(2, n + m + 1):
        cols = k - rows                                   # j for i = 1..n
        valid = (cols >= 1) & (cols <= m)
        step_cost = cost.gather(2, (cols - 1).clamp(0, m - 1)[None, :, None].expand(batch, n, 1))[..., 0]
        previous, before = diagonals[k - 1], diagonals[k - 2]
        neighbours = torch.stack([before[:, :-1], previous[:, :-1], previous[:, 1:]], dim=-1)
        softmin = -gamma * torch.logsumexp(-neighbours / gamma, dim=-1)
        inner = torch.where(valid[None, :], step_cost + softmin, big)
        diagonals.append(torch.cat([big, inner], dim=1))
    stacked = torch.stack(diagonals, dim=1)               # B x (n + m + 1) x (n + 1)
    index = torch.arange(batch, device=device)
    return stacked[index, x_lengths + y_lengths, x_lengths]
