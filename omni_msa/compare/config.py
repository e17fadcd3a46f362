"""The comparison config: what a grid holds fixed and what it varies.

    output_dir: runs/compare_demo           # checkpoints and per-sample predictions (large)
    results_dir: results/demo               # runs.jsonl, summary.md and plots (small, committed)
    dataset: mosi
    data: {synthetic_n: 200}                # or {train: a.csv, valid: b.csv[, test: c.csv][, features: x.pkl]}
                                            # features: an MMSA pickle or a features.npz (+ features_manifest);
                                            # or extract: RECIPE (classic features from the raw media)
    evaluate_on: test                       # the split every row is computed on
    seeds: [0, 1]
    train_protocols: [{}]                   # MissingnessProtocol dicts; each trained model under each
    eval_protocols: [{}, {grid: inter}, {grid: modes}, {intra_rate: 0.3}]
    modality_sets: [[text], [audio, vision]] # also trained, selected and evaluated on each set alone
    omni:
      base: {backbone: ..., lora: ..., readout: ..., prompt: ..., media: ..., optim: ...}
      readouts: [discriminative, generative, {name: generative_zero_shot}]
      checkpoint: best                       # or last
      eval_protocols: [{}, {keep: [text]}]   # the omni readouts' own (default: the comparison's)
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
from typing import Any, Literal

from omni_msa.config import check_sections
from omni_msa.config_layer import SHORTHAND, ConfigError, build, check_literals, load
from omni_msa.data.feature_files import feature_manifest
from omni_msa.data.missing import MissingnessProtocol, expand_protocols
from omni_msa.data.record import MODALITIES, label_range
from omni_msa.feature_sets import get_feature_set
from omni_msa.readouts import get_readout

# Sections the harness sets itself for every run.
HARNESS_SECTIONS = ("output_dir", "data", "train_missing", "eval_missing", "media_cache_dir")
# What one readout may change without breaking the control.
READOUT_OVERRIDABLE = ("readout", "optim")
# The convergence rule: the same for every readout of a comparison (set it in omni.base).
CONVERGENCE_RULE = ("epochs", "max_steps", "eval_every_steps", "early_stopping_patience")


@dataclass(frozen=True)
class ReadoutSpec:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def zero_shot(self) -> bool:
        """Scored on the bare backbone, never trained."""
        return not get_readout(self.name).trained


@dataclass(frozen=True)
class ClassicSpec:
    """A classic model of the comparison (a path alone is the config without overrides)."""

    config: str
    """A classic run config (`classic_msa.config`); its data, seeds and protocols are the comparison's."""
    overrides: list[str] = field(default_factory=list)
    """`section.key=value` overrides of that config."""


@dataclass(frozen=True)
class CompareData:
    """The samples every contender sees: manifests, or the built-in synthetic set."""

    synthetic_n: int | None = None
    synthetic_seed: int = 0
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    features: str | None = None
    """A feature file with the same ids, for classic models: an MMSA pickle or a features.npz."""
    features_manifest: str | None = None
    """The manifest of a features.npz (its row order); default `manifest.csv` beside it."""
    feature_set: str | None = None
    """The named feature set the features are checked against (`omni_msa.feature_sets`); default: the
    one a features.npz names, else the dataset's default set for the file name or `features_layout`."""
    features_layout: str | None = None
    """aligned / unaligned when an MMSA pickle's file name does not say."""
    extract: str | None = None
    """Instead of `features`: an extraction recipe (`omni_msa.extract.recipes`, e.g. `extracted_egemaps`); the
    classic models read features extracted from the manifests' raw media, the complete media for training and
    each evaluation protocol's damaged media for its rows (`omni_msa.extract.source`)."""
    skip_invalid: bool = False
    dev_fraction: float | None = None
    """The omni readouts select on a dev split of this share of the training videos, carved from train
    by video id (`DataSettings.dev_fraction`), and `evaluate_on` is only reported on; None: on valid."""
    dev_seed: int = 0

    def __post_init__(self) -> None:
        if self.dev_fraction is not None and not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if (self.synthetic_n is None) == (self.train is None):
            raise ValueError("data needs `synthetic_n` or `train` and `valid` manifests (not both)")
        if self.train is not None and self.valid is None:
            raise ValueError("data needs a `valid` manifest with `train`")
        if self.extract is not None:
            if self.features is not None:
                raise ValueError("data: `extract` (features from the raw media) or `features` (a feature file), "
                                 "not both")
            from omni_msa.extract.recipes import get_recipe

            get_recipe(self.extract)
        if self.features is None:
            given = [k for k in ("features_manifest", "feature_set", "features_layout") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} describe `features`: set it too")
            return
        if self.feature_set is not None:
            get_feature_set(self.feature_set)
        if feature_manifest(self.features, self.features_manifest) is not None and self.features_layout is not None:
            raise ValueError("`features_layout` picks an MMSA pickle's feature set; a features.npz takes `feature_set`")


@dataclass(frozen=True)
class OmniSection:
    """The omni readouts of a comparison and what they share."""

    base: dict[str, Any] = field(default_factory=dict)
    """Sections of an omni run config (`omni_msa.config`) shared by every readout: backbone, lora,
    readout, prompt, media, optim."""
    readouts: list[ReadoutSpec] = field(default_factory=list, metadata={SHORTHAND: "name"})
    """Each a readout name or {name, overrides}."""
    checkpoint: Literal["best", "last"] = "best"
    """The checkpoint each trained readout is scored with."""
    eval_protocols: list[dict[str, Any]] | None = None
    """The readouts' evaluation protocols (None: the comparison's), e.g. complete data and `keep: [text]`
    alone for text-only readouts, for which the other retention modes have nothing to keep."""

    def __post_init__(self) -> None:
        check_literals(self)


@dataclass(frozen=True)
class CompareConfig:
    """A controlled comparison: every contender under every seed and protocol on the same samples."""

    output_dir: str
    """Checkpoints and per-sample predictions (large)."""
    results_dir: str
    """runs.jsonl, summary.md and plots (small, committed)."""
    dataset: str
    data: CompareData
    seeds: list[int]
    evaluate_on: Literal["train", "valid", "test"] = "test"
    """The split every row is computed on."""
    train_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """`MissingnessProtocol` dicts; each model is trained under each (the mask seed is the run's)."""
    eval_protocols: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """`MissingnessProtocol` dicts or {grid: inter|intra|modes[, intra_rate]} sweeps."""
    modality_sets: list[list[str]] = field(default_factory=list)
    """Modality sets each contender is also trained on alone (`keep`), selected on valid under the same set
    and evaluated on it alone, e.g. [[text], [audio], [text, vision]]: the per-modality-set rows. A contender
    whose inputs do not strictly contain a set (a text-only readout and [text]) is not trained on it."""
    omni: OmniSection = field(default_factory=OmniSection)
    eval_batch_size: int = 16
    classic: list[ClassicSpec] = field(default_factory=list, metadata={SHORTHAND: "config"})

    @property
    def omni_base(self) -> dict[str, Any]:
        return self.omni.base

    @property
    def readouts(self) -> list[ReadoutSpec]:
        return self.omni.readouts

    @property
    def omni_checkpoint(self) -> str:
        return self.omni.checkpoint

    def __post_init__(self) -> None:
        check_literals(self)
        label_range(self.dataset)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {self.seeds}")
        if not self.train_protocols or not self.eval_protocols:
            raise ValueError("train_protocols and eval_protocols need at least one protocol each ({} is complete data)")
        if self.evaluate_on == "test" and self.data.synthetic_n is None and self.data.test is None:
            raise ValueError("evaluate_on: test needs a `data.test` manifest")
        if not self.readouts and not self.classic:
            raise ValueError("nothing to compare: give omni.readouts and/or classic models")
        if self.classic and self.data.synthetic_n is None and self.data.features is None and self.data.extract is None:
            raise ValueError("classic models need features of the same samples: set data.features (a feature file) "
                             "or data.extract (a recipe that extracts them from the raw media)")
        if self.classic and self.data.dev_fraction is not None:
            raise ValueError("data.dev_fraction: classic models select on valid (a dev split carved from train is "
                             "implemented for the omni readouts only); compare them without it")
        self._check_omni()
        for i, spec in enumerate(self.train_protocols):
            build(MissingnessProtocol, spec, at=f"train_protocols[{i}]")
        self._check_modality_sets()
        for key, specs in (("eval_protocols", self.eval_protocols), ("omni.eval_protocols", self.omni.eval_protocols)):
            try:
                expand_protocols(specs or [{}], self.seeds[0])
            except ValueError as error:
                raise ConfigError(str(error), key=key) from None

    def _check_modality_sets(self) -> None:
        seen = set()
        for i, modalities in enumerate(self.modality_sets):
            try:
                keep = MissingnessProtocol(keep=frozenset(modalities)).keep
            except (TypeError, ValueError) as error:
                raise ConfigError(str(error), key=f"modality_sets[{i}]") from None
            if keep == frozenset(MODALITIES):
                raise ConfigError(f"{modalities} is every modality: training on all of them is "
                                  "`train_protocols: [{}]`", key=f"modality_sets[{i}]")
            if keep in seen:
                raise ConfigError(f"{modalities} repeats an earlier set", key=f"modality_sets[{i}]")
            seen.add(keep)

    def _check_omni(self) -> None:
        """The shared sections and each readout's overrides are omni run config sections, and the
        comparison stays controlled."""
        check_sections(self.omni_base, at="omni.base")
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
        for i, readout in enumerate(self.readouts):
            check_sections(readout.overrides, at=f"omni.readouts[{i}].overrides")

    def train_protocol(self, spec: dict[str, Any], seed: int) -> MissingnessProtocol:
        return MissingnessProtocol.from_dict({"seed": seed, **spec})

    def eval_protocols_for(self, seed: int, specs: list[dict[str, Any]] | None = None) -> list[MissingnessProtocol]:
        """The evaluation protocols of one seed (mask seed = the run's seed unless given): `specs`, else
        the comparison's."""
        return expand_protocols(self.eval_protocols if specs is None else specs, seed)


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
        rule = sorted(set(value) & set(CONVERGENCE_RULE)) if section == "optim" else []
        if rule:
            raise ValueError(f"{where} {rule}: the convergence rule {CONVERGENCE_RULE} is the same for every readout "
                             "of a comparison; set it in omni.base")
        if section == "optim" and get_readout(readout.name).reads:
            raise ValueError(f"{where}: it scores the model the {get_readout(readout.name).reads!r} readout trains, "
                             "so that readout's optimisation is its own; override it there")
        if section == "readout" and "kind" in value:
            raise ValueError(f"{where}: the readout kind follows from its name")


def compare_config_from_dict(raw: dict[str, Any]) -> CompareConfig:
    return build(CompareConfig, raw)


def load_compare_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    return load(CompareConfig, path, overrides)
