"""Run configuration for classic models: a YAML file plus `section.key=value` overrides.

    output_dir: runs/mdf_mosi
    seeds: [0, 1, 2]
    threads: 2                     # torch intra-op threads (optional)
    model: {name: mdf, dim: 128}   # `name` picks the registered model, the rest is its config
    data: {dataset: mosi, path: /data/MOSI/unaligned_50.pkl}   # or synthetic_n: 600
    # or {dataset: mosi, path: mosi_utterance/features.npz, evaluate_on: valid} (manifest.csv beside it)
    train: {lr: 1.0e-3, stages: [{epochs: 30}], train_protocol: {intra_rate: uniform}}
    eval_protocols: [{}, {grid: modes}, {inter_rate: 0.5, intra_rate: 0.5}]

Built by the one config layer (`omni_msa.config_layer`): an unknown key anywhere, the model's
options and the `train` section included, is refused with its dotted path and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omni_msa.config_layer import ConfigError, build, check_literals, load
from omni_msa.data.feature_files import feature_manifest
from omni_msa.data.missing import MissingnessProtocol, expand_protocols
from omni_msa.data.record import label_range
from omni_msa.feature_sets import feature_set_for, get_feature_set

from classic_msa.model import model_class
from classic_msa.trainer import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    """Where the features come from: a feature file (an MMSA pickle, or a features.npz with its
    manifest) or the built-in synthetic set; and the split the rows are computed on."""

    dataset: str = "mosi"
    """mosi, mosei or sims: the label range and the metrics."""
    path: str | None = None
    """A feature file: an MMSA pickle (`.pkl`) or a `features.npz` (exactly one of `path` and `synthetic_n`)."""
    manifest: str | None = None
    """The manifest of a features.npz (its ids in its row order, with text and labels); default
    `manifest.csv` beside it."""
    feature_set: str | None = None
    """The named feature set the file is checked against (`omni_msa.feature_sets`); default: the one a
    features.npz names, else the dataset's default set for the file name or `layout`."""
    layout: str | None = None
    """aligned / unaligned: picks among the dataset's MMSA sets when the pickle's file name does not say."""
    evaluate_on: Literal["train", "valid", "test"] = "test"
    """The split every row is computed on; models train on `train` and are selected on `valid`, so
    data without a test split (e.g. mosi_utterance) is evaluated on `valid`."""
    skip_invalid: bool = False
    """Skip samples that fail validation (reported) instead of failing the run."""
    synthetic_n: int | None = None
    """Samples of the built-in synthetic set (MOSI unaligned shapes)."""
    synthetic_seed: int = 0
    synthetic_dir: str | None = None
    """Where the synthetic pickle is written; default <output_dir>/data."""

    def __post_init__(self) -> None:
        check_literals(self)
        label_range(self.dataset)
        if (self.path is None) == (self.synthetic_n is None):
            raise ValueError("data needs exactly one of `path` (a feature file) or `synthetic_n`")
        if self.path is None:
            given = [k for k in ("manifest", "feature_set", "layout") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} describe a feature file: they need `path`")
            return
        if self.feature_set is not None:
            get_feature_set(self.feature_set)
        if feature_manifest(self.path, self.manifest) is None:      # an MMSA pickle: its set is known now
            feature_set_for(self.dataset, self.path, feature_set=self.feature_set, layout=self.layout)
        elif self.layout is not None:
            raise ValueError("`layout` picks an MMSA pickle's feature set; a features.npz takes `feature_set`")


@dataclass(frozen=True)
class ClassicRunConfig:
    """One classic model trained with each seed, then evaluated under each protocol."""

    output_dir: str
    """Checkpoints (`seed<k>/`) and results.jsonl."""
    model: dict[str, Any]
    """`name`: a registered classic model; every other key is an option of its config class
    (`<modality>_dim` are read from the data)."""
    data: DataConfig
    train: dict[str, Any] = field(default_factory=dict)
    """A `classic_msa.trainer.TrainConfig` mapping; its `seed` is set per run from `seeds`. Kept as
    written (it is part of the comparison harness's run key) and checked on load."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds, one run each."""
    eval_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """Each a `MissingnessProtocol` dict, or {grid: inter|intra|modes[, intra_rate]} for a standard
    sweep; without a seed it takes the run's seed. {} is complete data."""
    threads: int | None = None
    """torch intra-op threads (None: torch's default)."""

    def __post_init__(self) -> None:
        if "name" not in self.model:
            raise ConfigError("missing required key (a registered classic model)", key="model.name")
        try:
            config_class = model_class(self.model_name).config_class
        except ValueError as error:
            raise ConfigError(str(error), key="model.name") from None
        build(config_class, self.model_options, at="model")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"must be a non-empty list without repeats, got {self.seeds}", key="seeds")
        self.train_config(self.seeds[0])
        try:
            self.protocols(self.seeds[0])
        except ValueError as error:
            raise ConfigError(str(error), key="eval_protocols") from None

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    @property
    def model_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "seed": seed}, at="train")

    def protocols(self, seed: int) -> list[MissingnessProtocol]:
        """The evaluation protocols for one seed, sweeps expanded."""
        return expand_protocols(self.eval_protocols, seed)


def load_classic_config(path: str | Path, overrides: list[str] | None = None) -> ClassicRunConfig:
    return load(ClassicRunConfig, path, overrides)


def run_config_from_dict(raw: dict[str, Any]) -> ClassicRunConfig:
    return build(ClassicRunConfig, raw)

