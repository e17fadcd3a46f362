"""Neural mutual-information estimators between two batches of representations x (B x Dx), y (B x Dy).

Every estimator returns an estimate in nats (higher = more dependent), differentiable with
respect to both its own parameters and the inputs; `loss` is its negative, to be minimised
when the model should maximise MI (or used with a minus sign to minimise MI).
Samples from the product of marginals are made by pairing x_i with y_{(i + s) mod B} for a
random shift 0 < s < B, so that no positive pair is reused as a negative.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _shuffled(y: Tensor) -> Tensor:
    if y.shape[0] < 2:
        raise ValueError("MI estimation needs a batch of at least 2 pairs")
    shift = int(torch.randint(1, y.shape[0], (1,)))
    return torch.roll(y, shifts=shift, dims=0)


class _PairCritic(nn.Module):
    """T(x, y): an MLP on the concatenated pair, one score per row."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim + y_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([x, y], dim=-1)).squeeze(-1)


class MIEstimator(nn.Module):
    """Common interface: `forward(x, y)` -> scalar MI estimate; `loss(x, y)` = -estimate."""

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return -self(x, y)


class JSDMutualInformation(MIEstimator):
    """Deep InfoMax's Jensen-Shannon MI estimator (Hjelm et al., 2019).

    estimate = E_joint[-softplus(-T(x, y))] - E_marginal[softplus(T(x, y'))]. It is a bound on
    the JS divergence between joint and product of marginals, not on MI in nats, but it ranks
    dependence the same way and trains more stably than DV bounds.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.critic = _PairCritic(x_dim, y_dim, hidden)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        joint = self.critic(x, y)
        marginal = self.critic(x, _shuffled(y))
        return (-F.softplus(-joint)).mean() - F.softplus(marginal).mean()


class MINE(MIEstimator):
    """MINE (Belghazi et al., 2018): the Donsker-Varadhan bound
    E_joint[T] - log E_marginal[e^T], whose value is returned as is.

    The minibatch gradient of log E[e^T] is biased; as in the paper its denominator E[e^T] is
    replaced by an exponential moving average over batches (`ema_decay`), kept in the log
    domain (buffer `log_ema`, updated in training mode only) for stability. The returned tensor
    has the DV value and the bias-corrected gradient.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 64, ema_decay: float = 0.99) -> None:
        super().__init__()
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.critic = _PairCritic(x_dim, y_dim, hidden)
        self.ema_decay = ema_decay
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        joint = self.critic(x, y).mean()
        marginal = self.critic(x, _shuffled(y))
        log_mean_exp = torch.logsumexp(marginal, dim=0) - math.log(marginal.shape[0])
        if self.training:
            with torch.no_grad():
                if torch.isnan(self.log_ema):
                    self.log_ema.copy_(log_mean_exp)
                else:
                    self.log_ema.copy_(torch.logaddexp(self.log_ema + math.log(self.ema_decay),
                                                       log_mean_exp + math.log1p(-self.ema_decay)))
        denominator = log_mean_exp.detach() if torch.isnan(self.log_ema) else self.log_ema
        # d/dθ exp(lme - log_ema) = E[e^T ∇T] / ema: the corrected gradient of log E[e^T].
        surrogate = joint - torch.exp(log_mean_exp - denominator)
        value = joint - log_mean_exp
        return surrogate + (value - surrogate).detach()


class InfoNCE(MIEstimator):
    """InfoNCE (van den Oord et al., 2018) with a projection head per side (SimCLR-style MLPs).

    Projections are L2-normalised; logits are cosine similarities / `temperature`; positives
    are the diagonal. estimate = log B - cross-entropy (averaged over both directions when
    `symmetric`), a lower bound on MI that saturates at log B.
    """

    def __init__(self, x_dim: int, y_dim: int, proj_dim: int = 64, hidden: int = 128,
                 temperature: float = 0.1, symmetric: bool = True) -> None:
        super().__init__()
        self.head_x = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))
        self.head_y = nn.Sequential(nn.Linear(y_dim, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        zx = F.normalize(self.head_x(x), dim=-1)
        zy = F.normalize(self.head_y(y), dim=-1)
        logits = zx @ zy.T / self.temperature
        targets = torch.arange(x.shape[0], device=x.device)
        ce = F.cross_entropy(logits, targets)
        if self.symmetric:
            ce = 0.5 * (ce + F.cross_entropy(logits.T, targets))
        return math.log(x.shape[0]) - ce
