"""Learning-rate schedule: linear warm-up, then cosine decay or reduce-on-plateau.

lr = base_lr x warm-up factor x (cosine factor | plateau scale), per parameter group. One
object owns both phases (torch's LambdaLR and ReduceLROnPlateau would overwrite each other's
learning rates), and its whole state is plain numbers, for resume.
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer

ScheduleKind = Literal["cosine", "plateau", "constant"]


class LRSchedule:
    """Call `step_batch()` after every optimizer step and `step_epoch(valid_mae)` after every
    evaluation. Plateau (as ReduceLROnPlateau, mode "min", relative threshold 1e-4): after
    more than `plateau_patience` epochs without improvement the scale is multiplied by
    `plateau_factor`, down to `min_lr_ratio` (cosine decays to the same floor)."""

    def __init__(self, optimizer: Optimizer, *, kind: ScheduleKind, total_steps: int, warmup_steps: int = 0,
                 min_lr_ratio: float = 0.0, plateau_factor: float = 0.5, plateau_patience: int = 3) -> None:
        if kind not in ("cosine", "plateau", "constant"):
            raise ValueError(f"unknown schedule {kind!r}; expected 'cosine', 'plateau' or 'constant'")
        self.optimizer = optimizer
        self.kind = kind
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0
        self._apply()

    def factor(self) -> float:
        warm = min(1.0, (self.steps + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = min(max(self.steps - self.warmup_steps, 0) / span, 1.0)
            return warm * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        if self.kind == "plateau":
            return warm * self.plateau_scale
        return warm

    def step_batch(self) -> None:
        self.steps += 1
        self._apply()

    def step_epoch(self, metric: float) -> None:
        if self.kind != "plateau":
            return
        if metric < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.plateau_patience:
            self.plateau_scale = max(self.plateau_scale * self.plateau_factor, self.min_lr_ratio)
            self.bad_epochs = 0
            self._apply()

    def state_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "plateau_scale": self.plateau_scale, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.steps = int(state["steps"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()

    def _apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
