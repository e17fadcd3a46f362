"""The readout protocol, its settings and its registry.

A readout is an `nn.Module` over the backbone with `forward(batch) -> loss` (training) and
`predict(batch) -> Predictions` (scoring and validation, one code path for both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from omni_msa.registry import Registry


@dataclass(frozen=True)
class ReadoutSettings:
    kind: str = "discriminative"              # a registered readout (omni_msa.readouts)
    head: Literal["linear", "mlp"] = "linear"  # regression head of readouts that have one
    head_hidden: int = 256
    head_dropout: float = 0.1
    loss: Literal["mse", "l1", "huber"] = "huber"
    max_new_tokens: int = 6                   # decoding budget of readouts that write the score
    unparsable_fallback: float = 0.0          # the prediction of an answer that does not parse
    statistic: Literal["median", "mean"] = "median"  # what readouts with a distribution over answers predict

    def __post_init__(self) -> None:
        get_readout(self.kind)
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head {self.head!r}: expected 'linear' or 'mlp'")
        if self.loss not in ("mse", "l1", "huber"):
            raise ValueError(f"loss {self.loss!r}: expected 'mse', 'l1' or 'huber'")
        if self.statistic not in ("median", "mean"):
            raise ValueError(f"statistic {self.statistic!r}: expected 'median' or 'mean'")

    @property
    def entry(self) -> ReadoutEntry:
        return get_readout(self.kind)


@dataclass
class Predictions:
    values: torch.Tensor
    statuses: list[str]
    texts: list[str] | None = None
    extra: dict[str, torch.Tensor] | None = None
    """Per-sample numbers beyond the prediction (a distribution's std, the probability mass it
    held), one value per sample each; written beside the prediction in the per-sample rows."""


@dataclass(frozen=True)
class ReadoutContext:
    """What a readout is built from: the (LoRA-wrapped) backbone, the settings, the dataset's
    label range and the input builder (tokenizer, stop tokens, decoding of ids)."""

    backbone: nn.Module
    settings: ReadoutSettings
    label_range: tuple[float, float]
    builder: Any


@dataclass(frozen=True)
class ReadoutEntry:
    name: str
    build: Callable[[ReadoutContext], nn.Module]
    trained: bool = True          # False: scored on the bare backbone, never trained (zero-shot)
    with_answers: bool = False    # training batches carry the answer text (teacher forcing)
    parsed: bool = False          # predictions carry parse statuses (ok / unparsable / out_of_range)
    uses_lm_head: bool = False    # computes vocabulary logits (the dry-run memory plan counts them)
    reads: str | None = None      # scores the model another readout trains (its training is reused)
    custom_attention_mask: bool = False  # runs the model under a 4-D mask (so never FlashAttention-2)


READOUTS: Registry[ReadoutEntry] = Registry("readout", "omni_msa.readouts")


def register_readout(name: str, **flags: Any) -> Callable[[Callable[[ReadoutContext], nn.Module]],
                                                           Callable[[ReadoutContext], nn.Module]]:
    """Decorator registering a builder `ReadoutContext -> readout module` under `name`, with the
    `ReadoutEntry` fields (`trained`, `with_answers`, `parsed`, `uses_lm_head`, `reads`,
    `custom_attention_mask`)."""
    def decorate(build: Callable[[ReadoutContext], nn.Module]) -> Callable[[ReadoutContext], nn.Module]:
        READOUTS.register(name, ReadoutEntry(name=name, build=build, **flags))
        return build
    return decorate


def get_readout(name: str) -> ReadoutEntry:
    return READOUTS.get(name)


def readout_names() -> list[str]:
    return READOUTS.names()
