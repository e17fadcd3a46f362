"""The comparison config: what a grid holds fixed and what it varies.

    output_dir: runs/compare_demo           # checkpoints and per-sample predictions (large)
    results_dir: results/demo               # runs.jsonl, summary.md and plots (small, committed)
    dataset: mosi
    data: {synthetic_n: 200}                # or {train: a.csv, valid: b.csv[, test: c.csv][, features: x.pkl]}
    evaluate_on: test                       # the split every row is computed on
    seeds: [0, 1]
    train_protocols: [{}]                   # MissingnessProtocol dicts; each trained model under each
    eval_protocols: [{}, {grid: inter}, {grid: modes}, {intra_rate: 0.3}]
    omni:
      base: {backbone: ..., lora: ..., readout: ..., prompt: ..., media: ..., optim: ...}
      readouts: [discriminative, generative, {name: generative_zero_shot}]
      checkpoint: best                       # or last
    classic:
      - {config: scripts/configs/mdf_synthetic.yaml, overrides: [train.stages=...]}

A comparison is controlled: every readout shares `omni.base` (backbone, LoRA, prompt, media,
data, seeds). A readout entry may override only its own readout settings and optimisation
(`readout.*`, `optim.*` except the seed); an override of the backbone, LoRA or anything else is
refused, because the comparison would no longer isolate the readout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_msa.data.missing import MissingnessProtocol, expand_protocols
from omni_msa.data.record import label_range
from omni_msa.readouts import get_readout
from omni_msa.yaml_config import load_yaml_config

# Sections the harness sets itself for every run.
HARNESS_SECTIONS = ("output_dir", "data", "train_missing", "eval_missing", "media_cache_dir")
# What one readout may change without breaking the control.
READOUT_OVERRIDABLE = ("readout", "optim")


@dataclass(frozen=True)
class ReadoutSpec:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The registered readout (`omni_msa.readouts`) the name stands for."""
        return self.name

    @property
    def zero_shot(self) -> bool:
        """Scored on the bare backbone, never trained."""
        return not get_readout(self.name).trained


@dataclass(frozen=True)
class ClassicSpec:
    config: str
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CompareData:
    synthetic_n: int | None = None
    synthetic_seed: int = 0
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    features: str | None = None       # an MMSA pickle with the same ids, for classic models
    features_layout: str | None = None  # aligned / unaligned when the file name does not say
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        if (self.synthetic_n is None) == (self.train is None):
            raise ValueError("data needs `synthetic_n` or `train` and `valid` manifests (not both)")
        if self.train is not None and self.valid is None:
            raise ValueError("data needs a `valid` manifest with `train`")


@dataclass(frozen=True)
class CompareConfig:
    output_dir: str
    results_dir: str
    dataset: str
    data: CompareData
    seeds: list[int]
    evaluate_on: str = "test"
    train_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    eval_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    omni_base: dict[str, Any] = field(default_factory=dict)
    readouts: list[ReadoutSpec] = field(default_factory=list)
    omni_checkpoint: str = "best"
    eval_batch_size: int = 16
    classic: list[ClassicSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        label_range(self.dataset)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {self.seeds}")
        if self.evaluate_on not in ("train", "valid", "test"):
            raise ValueError(f"evaluate_on must be train, valid or test, got {self.evaluate_on!r}")
        if self.evaluate_on == "test" and self.data.synthetic_n is None and self.data.test is None:
            raise ValueError("evaluate_on: test needs a `data.test` manifest")
        if self.omni_checkpoint not in ("best", "last"):
            raise ValueError(f"omni.checkpoint must be best or last, got {self.omni_checkpoint!r}")
        if not self.readouts and not self.classic:
            raise ValueError("nothing to compare: give omni.readouts and/or classic models")
        if self.classic and self.data.synthetic_n is None and self.data.features is None:
            raise ValueError("classic models need MMSA features of the same samples: set data.features")
        if self.readouts and not self.omni_base.get("backbone"):
            raise ValueError("omni.base needs a `backbone` section")
        for section in HARNESS_SECTIONS:
            if section in self.omni_base:
                raise ValueError(f"omni.base sets `{section}`, which the harness sets for every run; remove it")
        names = [r.name for r in self.readouts]
        if len(set(names)) != len(names):
            raise ValueError(f"readouts repeat: {names}")
        for readout in self.readouts:
            check_readout_overrides(readout)
        for spec in self.train_protocols:
            MissingnessProtocol.from_dict(spec)
        self.eval_protocols_for(self.seeds[0])

    def train_protocol(self, spec: dict[str, Any], seed: int) -> MissingnessProtocol:
        return MissingnessProtocol.from_dict({"seed": seed, **spec})

    def eval_protocols_for(self, seed: int) -> list[MissingnessProtocol]:
        """The evaluation protocols of one seed (mask seed = the run's seed unless given)."""
        return expand_protocols(self.eval_protocols, seed)


def check_readout_overrides(readout: ReadoutSpec) -> None:
    """Refuse overrides that would make the comparison uncontrolled."""
    get_readout(readout.name)
    for section, value in readout.overrides.items():
        where = f"readout {readout.name!r} overrides `{section}`"
        if section in ("backbone", "lora"):
            raise ValueError(f"{where}: every readout of a comparison must use the same backbone and "
                             f"LoRA configuration, or the comparison is not controlled. Set it in "
                             f"omni.base, or run a separate comparison per backbone/LoRA setting.")
        if section not in READOUT_OVERRIDABLE:
            raise ValueError(f"{where}: a readout may override only {READOUT_OVERRIDABLE}; data, prompt, "
                             f"media and missingness are held fixed across readouts")
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping")
        if section == "optim" and "seed" in value:
            raise ValueError(f"{where}: seeds come from the comparison's `seeds`")
        if section == "readout" and "kind" in value:
            raise ValueError(f"{where}: the readout kind follows from its name")


def _readout(entry: Any) -> ReadoutSpec:
    if isinstance(entry, str):
        return ReadoutSpec(entry)
    entry = dict(entry)
    unknown = set(entry) - {"name", "overrides"}
    if unknown or "name" not in entry:
        raise ValueError(f"a readout entry is a name or {{name, overrides}}, got {entry}")
    return ReadoutSpec(entry["name"], dict(entry.get("overrides") or {}))


def compare_config_from_dict(raw: dict[str, Any]) -> CompareConfig:
    known = {"output_dir", "results_dir", "dataset", "data", "seeds", "evaluate_on", "train_protocols",
             "eval_protocols", "omni", "classic", "eval_batch_size"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown comparison config keys {sorted(unknown)}; known: {sorted(known)}")
    for key in ("output_dir", "results_dir", "dataset", "data", "seeds"):
        if key not in raw:
            raise ValueError(f"comparison config needs `{key}`")
    omni = dict(raw.get("omni") or {})
    unknown = set(omni) - {"base", "readouts", "checkpoint"}
    if unknown:
        raise ValueError(f"unknown keys in `omni`: {sorted(unknown)} (known: base, readouts, checkpoint)")
    classic = [ClassicSpec(str(c["config"]), [str(o) for o in c.get("overrides") or []])
               if isinstance(c, dict) else ClassicSpec(str(c)) for c in raw.get("classic") or []]
    return CompareConfig(
        output_dir=str(raw["output_dir"]), results_dir=str(raw["results_dir"]), dataset=str(raw["dataset"]),
        data=CompareData(**raw["data"]), seeds=[int(s) for s in raw["seeds"]],
        evaluate_on=raw.get("evaluate_on", "test"),
        train_protocols=list(raw.get("train_protocols") or [{}]),
        eval_protocols=list(raw.get("eval_protocols") or [{}]),
        omni_base=dict(omni.get("base") or {}), readouts=[_readout(r) for r in omni.get("readouts") or []],
        omni_checkpoint=omni.get("checkpoint", "best"), eval_batch_size=int(raw.get("eval_batch_size", 16)),
        classic=classic)


def load_compare_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    return compare_config_from_dict(load_yaml_config(path, overrides))
