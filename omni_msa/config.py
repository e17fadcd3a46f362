"""Run configuration for omni readout training: YAML file plus `key.sub=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_msa.backbone import BackboneConfig, LoraSettings
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import label_range
from omni_msa.media_inputs import MediaSettings
from omni_msa.prompt import PromptSettings
from omni_msa.readouts import ReadoutSettings
from omni_msa.yaml_config import load_yaml_config


@dataclass(frozen=True)
class DataSettings:
    """Where samples come from: manifests (`train`, `valid`) or the built-in synthetic set."""

    dataset: str = "mosi"
    train: str | None = None
    valid: str | None = None
    synthetic_n: int | None = None
    synthetic_seed: int = 0
    skip_invalid: bool = False
    max_train_samples: int | None = None
    max_valid_samples: int | None = None

    def __post_init__(self) -> None:
        label_range(self.dataset)
        if self.synthetic_n is None and (self.train is None or self.valid is None):
            raise ValueError("data needs `train` and `valid` manifests, or `synthetic_n`")


@dataclass(frozen=True)
class OptimSettings:
    seed: int = 0
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    eval_batch_size: int = 16
    grad_accum: int = 1
    lr: float = 2e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    eval_every_steps: int | None = None
    checkpoint_every_steps: int | None = None
    early_stopping_patience: int | None = None
    mixed_precision: str = "no"


@dataclass(frozen=True)
class RunConfig:
    output_dir: str
    backbone: BackboneConfig
    data: DataSettings
    lora: LoraSettings = field(default_factory=LoraSettings)
    readout: ReadoutSettings = field(default_factory=ReadoutSettings)
    prompt: PromptSettings | None = None
    media: MediaSettings = field(default_factory=MediaSettings)
    media_cache_dir: str | None = None  # default: <output_dir>/media_cache
    train_missing: MissingnessProtocol = field(default_factory=MissingnessProtocol)
    eval_missing: MissingnessProtocol = field(default_factory=MissingnessProtocol)
    optim: OptimSettings = field(default_factory=OptimSettings)

    @property
    def prompt_settings(self) -> PromptSettings:
        """The prompt, with the label range of the dataset unless the config sets one."""
        if self.prompt is not None:
            return self.prompt
        low, high = label_range(self.data.dataset)
        return PromptSettings(label_low=low, label_high=high)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, MissingnessProtocol):
                value = value.to_dict()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            out[f.name] = value
        return out


_SECTIONS = {"backbone": BackboneConfig, "data": DataSettings, "lora": LoraSettings, "readout": ReadoutSettings,
             "prompt": PromptSettings, "media": MediaSettings, "optim": OptimSettings}


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    unknown = set(raw) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ValueError(f"unknown config sections: {sorted(unknown)}")
    kwargs: dict[str, Any] = {"output_dir": raw.get("output_dir"), "media_cache_dir": raw.get("media_cache_dir")}
    if kwargs["output_dir"] is None:
        raise ValueError("config needs `output_dir`")
    for name, cls in _SECTIONS.items():
        if raw.get(name) is not None:
            section = raw[name]
            known = {f.name for f in dataclasses.fields(cls)}
            bad = set(section) - known
            if bad:
                raise ValueError(f"unknown keys in `{name}`: {sorted(bad)} (known: {sorted(known)})")
            kwargs[name] = cls(**section)
    for name in ("train_missing", "eval_missing"):
        if raw.get(name) is not None:
            kwargs[name] = MissingnessProtocol.from_dict(raw[name])
    return RunConfig(**kwargs)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return config_from_dict(load_yaml_config(path, overrides))
