"""Run configuration for classic models: a YAML file plus `section.key=value` overrides.

    output_dir: runs/mdf_mosi
    seeds: [0, 1, 2]
    threads: 2                     # torch intra-op threads (optional)
    model: {name: mdf, dim: 128}   # `name` picks the registered model, the rest is its config
    data: {dataset: mosi, path: /data/MOSI/unaligned_50.pkl}   # or synthetic_n: 600
    train: {lr: 1.0e-3, stages: [{epochs: 30}], train_protocol: {intra_rate: uniform}}
    eval_protocols: [{}, {grid: modes}, {inter_rate: 0.5, intra_rate: 0.5}]

`train` is a `TrainConfig` (its `seed` is set per run from `seeds`). Each `eval_protocols`
entry is a `MissingnessProtocol` dict, or {grid: inter|intra|modes[, intra_rate]} for a standard
sweep; without a seed it takes the run's seed. {} is complete data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omni_msa.data.missing import MissingnessProtocol, expand_protocols
from omni_msa.data.record import label_range
from omni_msa.yaml_config import load_yaml_config

from classic_msa.trainer import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    """An MMSA feature pickle (`path`) or the built-in synthetic set (`synthetic_n` samples,
    written to `synthetic_dir`, default <output_dir>/data)."""

    dataset: str = "mosi"
    path: str | None = None
    layout: str | None = None
    skip_invalid: bool = False
    synthetic_n: int | None = None
    synthetic_seed: int = 0
    synthetic_dir: str | None = None

    def __post_init__(self) -> None:
        label_range(self.dataset)
        if (self.path is None) == (self.synthetic_n is None):
            raise ValueError("data needs exactly one of `path` (an MMSA pickle) or `synthetic_n`")


@dataclass(frozen=True)
class RunConfig:
    output_dir: str
    model: dict[str, Any]
    data: DataConfig
    train: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    threads: int | None = None

    def __post_init__(self) -> None:
        if "name" not in self.model:
            raise ValueError("model needs a `name` (a registered classic model)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {self.seeds}")
        self.train_config(self.seeds[0])
        self.protocols(self.seeds[0])

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    @property
    def model_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "seed": seed})

    def protocols(self, seed: int) -> list[MissingnessProtocol]:
        """The evaluation protocols for one seed, sweeps expanded."""
        return expand_protocols(self.eval_protocols, seed)


def load_classic_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return run_config_from_dict(load_yaml_config(path, overrides))


def run_config_from_dict(raw: dict[str, Any]) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; known: {sorted(known)}")
    if "output_dir" not in raw or "model" not in raw or "data" not in raw:
        raise ValueError("a run config needs `output_dir`, `model` and `data`")
    data_keys = {f.name for f in fields(DataConfig)}
    bad = sorted(set(raw["data"]) - data_keys)
    if bad:
        raise ValueError(f"unknown data keys {bad}; known: {sorted(data_keys)}")
    return RunConfig(**{**raw, "data": DataConfig(**raw["data"])})
