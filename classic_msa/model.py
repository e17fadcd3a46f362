"""The interface every classic model implements, and the name -> class registry.

A model is an `nn.Module` built from one config dataclass (`config_class`) holding everything
needed to rebuild it (input dims included), so a checkpoint is config JSON + safetensors.

    @register_model("mymodel")
    class MyModel(FeatureModel):
        config_class = MyConfig
        def forward(self, batch): ...   # {"pred": B, "task": scalar, "other_term": scalar, ...}
        def default_loss_weights(self): return {"task": 1.0, "other_term": 0.1}

`forward` returns "pred" (B predictions on the label scale) and every loss term it defines as
a scalar; the trainer sums the terms a stage enables, with the stage's weights. Parameter
groups (`parameter_groups`) name what a stage may freeze or give its own learning rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from omni_msa.data.record import Sample
from omni_msa.registry import Registry

from classic_msa.data import FeatureBatch

# Every module of classic_msa.models is imported before the first lookup: a model is one module there.
MODELS: Registry[type] = Registry("model", "classic_msa.models")


class FeatureModel(nn.Module):
    """Base class of the feature-level models (see the module docstring for the contract)."""

    config_class: ClassVar[type]
    name: ClassVar[str]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        raise NotImplementedError

    def fit_statistics(self, samples: Sequence[Sample]) -> None:
        """Fit input statistics (e.g. feature standardisers) on the complete training samples.
        Called once by the trainer before the first epoch; the default does nothing."""

    def default_loss_weights(self) -> dict[str, float]:
        """The loss terms (and weights) a stage uses when it does not list its own."""
        return {"task": 1.0}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups that partition the parameters. Default: one group per child module."""
        groups = {name: list(child.parameters()) for name, child in self.named_children()}
        own = [p for name, p in self.named_parameters(recurse=False)]
        if own:
            groups["_own"] = own
        return {name: params for name, params in groups.items() if params}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def n_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def register_model(name: str):
    """Class decorator: make a `FeatureModel` subclass buildable by `name`."""
    def decorate(cls: type[FeatureModel]) -> type[FeatureModel]:
        cls.name = name
        return MODELS.register(name, cls)
    return decorate


def model_names() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type[FeatureModel]:
    return MODELS.get(name)


def build_model(name: str, config: Mapping[str, Any] | None = None) -> FeatureModel:
    """Build a registered model from a plain config mapping (unknown keys are an error)."""
    cls = model_class(name)
    config = dict(config or {})
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {name} config keys {unknown}; known: {sorted(known)}")
    return cls(cls.config_class(**config))

