"""Run configuration for omni readout training: a YAML file plus `section.key=value` overrides.

Built by the one config layer (`omni_msa.config_layer`): an unknown key in any section is refused
with its dotted path and the file. A missingness protocol (`train_missing`, `eval_missing`) that does
not set its seed takes the run's `optim.seed`, as in the classic trainer and the comparison harness.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omni_msa.backbone import BackboneConfig, LoraSettings
from omni_msa.config_layer import (
    DICT_SOURCE,
    build,
    check_literals,
    convert,
    field_types,
    join_key,
    read,
    to_plain,
    unknown_key,
)
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import label_range
from omni_msa.media_inputs import MediaSettings
from omni_msa.prompt import PromptSettings
from omni_msa.readouts import ReadoutSettings

PROTOCOL_SECTIONS = ("train_missing", "eval_missing")


@dataclass(frozen=True)
class DataSettings:
    """Where samples come from: manifests (`train`, `valid`) or the built-in synthetic set."""

    dataset: str = "mosi"
    """mosi, mosei or sims: the label range, the prompt's scale and the metrics."""
    train: str | None = None
    """The training manifest (CSV or JSONL)."""
    valid: str | None = None
    """The validation manifest: early stopping and the best checkpoint."""
    synthetic_n: int | None = None
    """Samples of the built-in synthetic set instead of manifests."""
    synthetic_seed: int = 0
    skip_invalid: bool = False
    """Skip samples that fail validation or preparation (reported) instead of failing the run."""
    max_train_samples: int | None = None
    """Use only the first N training samples (a quick run)."""
    max_valid_samples: int | None = None
    dev_fraction: float | None = None
    """Select (best checkpoint, early stopping) on a dev split of this share of the training videos,
    carved from `train` by video id (`omni_msa.data.splits.carve_dev`), instead of on `valid`; valid
    is then only reported on, so its figures are not selected on themselves. None: select on valid."""
    dev_seed: int = 0
    """Which videos the dev split takes (a hash of seed and video id): fixed across training seeds."""

    def __post_init__(self) -> None:
        label_range(self.dataset)
        if self.synthetic_n is None and (self.train is None or self.valid is None):
            raise ValueError("data needs `train` and `valid` manifests, or `synthetic_n`")
        if self.dev_fraction is not None and not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")

    @property
    def selection_split(self) -> str:
        """The split the best checkpoint is chosen on: "dev" (carved from train) or "valid"."""
        return "valid" if self.dev_fraction is None else "dev"


@dataclass(frozen=True)
class OptimSettings:
    """Optimisation of the LoRA adapters and the readout head."""

    seed: int = 0
    """The run's seed: initialisation, batch order, and missingness protocols without a seed."""
    epochs: int = 1
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: `epochs` full epochs)."""
    batch_size: int = 8
    eval_batch_size: int = 16
    grad_accum: int = 1
    """Batches per optimizer step."""
    lr: float = 2e-4
    """Learning rate of the LoRA adapters (every trainable parameter outside `head.*`)."""
    head_lr: float = 1e-3
    """Learning rate of the discriminative readout's head (`head.*`)."""
    weight_decay: float = 0.0
    """AdamW weight decay, on parameters with ndim >= 2 only (`omni_msa.optim.param_groups`)."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming up."""
    scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                       "constant_with_warmup"] = "cosine"
    """A transformers `get_scheduler` name."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping; 0 disables it."""
    eval_every_steps: int | None = None
    """Validate every N steps (None: after every epoch)."""
    checkpoint_every_steps: int | None = None
    """Write `checkpoint-last` every N steps (None: after every validation)."""
    early_stopping_patience: int | None = None
    """Validations without a better valid selection metric (MAE for MOSI, MOSEI, SIMS) before training
    stops (None: never)."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """accelerate's mixed precision."""

    def __post_init__(self) -> None:
        check_literals(self)


@dataclass(frozen=True)
class OmniRunConfig:
    """One omni readout over one backbone: what to load, what to train on, how."""

    output_dir: str
    """Checkpoints (`checkpoint-best`, `checkpoint-last`), `train_summary.json` and logs."""
    backbone: BackboneConfig
    data: DataSettings
    lora: LoraSettings = field(default_factory=LoraSettings)
    readout: ReadoutSettings = field(default_factory=ReadoutSettings)
    prompt: PromptSettings | None = None
    """None: the default prompt with the dataset's label range (`prompt_settings`)."""
    media: MediaSettings = field(default_factory=MediaSettings)
    media_cache_dir: str | None = None
    """Decoded-media cache; None: <output_dir>/media_cache."""
    train_missing: MissingnessProtocol = field(default_factory=MissingnessProtocol)
    """Training missingness, re-drawn every epoch (`omni_msa.seeding.epoch_protocol`)."""
    eval_missing: MissingnessProtocol = field(default_factory=MissingnessProtocol)
    """Missingness of the in-training validation."""
    optim: OptimSettings = field(default_factory=OptimSettings)

    @property
    def prompt_settings(self) -> PromptSettings:
        """The prompt, with the label range of the dataset unless the config sets one."""
        if self.prompt is not None:
            return self.prompt
        low, high = label_range(self.data.dataset)
        return PromptSettings(label_low=low, label_high=high)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def config_from_dict(raw: Mapping[str, Any], *, where: str = DICT_SOURCE) -> OmniRunConfig:
    """An omni run config from a mapping (`where`: the file it was read from, for error messages)."""
    return build(OmniRunConfig, _with_run_seed(raw), where=where)


def load_config(path: str | Path, overrides: list[str] | None = None) -> OmniRunConfig:
    return config_from_dict(read(path, overrides), where=str(path))


def check_sections(raw: Mapping[str, Any], *, at: str) -> None:
    """Check part of an omni run config (e.g. a comparison's shared `omni.base`): each section given
    must be one of the run config's and build as that section."""
    types_ = field_types(OmniRunConfig)
    for name, value in raw.items():
        if name not in types_:
            raise unknown_key(join_key(at, name), types_)
        convert(types_[name], value, at=join_key(at, name))


def _with_run_seed(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with the run's seed in every missingness protocol that does not set one (an absent or
    null protocol is complete data)."""
    raw = copy.deepcopy(dict(raw))
    optim = raw.get("optim")
    seed = optim.get("seed", 0) if isinstance(optim, Mapping) else 0
    for name in PROTOCOL_SECTIONS:
        protocol = raw.get(name) or {}
        raw[name] = {"seed": seed, **protocol} if isinstance(protocol, Mapping) and isinstance(seed, int) else protocol
    return raw

