"""The one weight-decay rule of every trainer (nanoGPT's `configure_optimizers`).

Weight decay applies to parameters with two or more dimensions (weight matrices, embeddings,
convolution kernels, LoRA factors) and never to the others (biases, norm gains, scalars): decaying
a bias or a norm gain towards zero only shifts or shrinks activations. Each named group (a classic
model's `parameter_groups()`, the omni readout's body and head) gets its own learning rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def param_groups(groups: Mapping[str, Iterable[nn.Parameter]], *, lr: float, weight_decay: float,
                 group_lr: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """AdamW parameter groups: for each named group (in order), its parameters with ndim >= 2 under
    `weight_decay`, then the others without; learning rate `group_lr[name]`, else `lr`. Parameters
    that do not require gradients are left out, empty groups dropped; each dict names its `group`."""
    group_lr = group_lr or {}
    out = []
    for name, params in groups.items():
        trainable = [p for p in params if p.requires_grad]
        rate = group_lr.get(name, lr)
        decay = [p for p in trainable if p.ndim >= 2]
        no_decay = [p for p in trainable if p.ndim < 2]
        out += [{"params": ps, "lr": rate, "weight_decay": wd, "group": name}
                for ps, wd in ((decay, weight_decay), (no_decay, 0.0)) if ps]
    return out


def groups_by_prefix(named_parameters: Iterable[tuple[str, nn.Parameter]], prefixes: Mapping[str, str],
                     rest: str) -> dict[str, list[nn.Parameter]]:
    """Named parameters split into groups by name prefix: `{"head": "head."}` puts `head.*` in group
    "head" and every other parameter in group `rest` (the first matching prefix wins)."""
    out: dict[str, list[nn.Parameter]] = {rest: [], **{name: [] for name in prefixes}}
    for param_name, param in named_parameters:
        group = next((name for name, prefix in prefixes.items() if param_name.startswith(prefix)), rest)
        out[group].append(param)
    return out
