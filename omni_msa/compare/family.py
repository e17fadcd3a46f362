"""The interface every model family implements to take part in a comparison.

A contender is one line of the comparison: an omni readout or a classic model. The harness
calls `fit` once per (seed, training protocol) and `evaluate` once per evaluation protocol;
metrics, latency statistics and rows are computed by the harness from what `evaluate` returns,
the same way for every family. `settings(data)` includes the data's fingerprint
(`with_data`), so a contender's settings, and with them its run keys, change with the data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from omni_msa.data.feature_files import feature_set_of
from omni_msa.data.fingerprint import DataFingerprint, data_fingerprint
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample
from omni_msa.files import read_json

if TYPE_CHECKING:
    from omni_msa.extract.source import MediaFeatures

logger = logging.getLogger(__name__)


@dataclass
class SharedData:
    """The samples every contender sees: manifests for raw-media models and, where there are
    features of the same ids, a feature file for feature models (an MMSA pickle, or a
    features.npz with its manifest)."""

    dataset: str
    evaluate_on: str
    manifest: dict[str, str]                 # split -> manifest path
    samples: dict[str, list[Sample]]         # split -> raw-media samples (train, valid, eval split)
    features: str | None = None              # feature file path
    features_manifest: str | None = None     # the manifest of a features.npz (resolved)
    feature_set: str | None = None
    features_layout: str | None = None
    skip_invalid: bool = False
    media_cache_dir: str | None = None
    reader_errors: list[dict[str, Any]] = field(default_factory=list)
    synthetic: dict[str, Any] | None = None  # the generation spec, when the samples are the built-in set
    media_features: MediaFeatures | None = None  # feature models' features extracted from the media instead
    dev_fraction: float | None = None        # omni readouts select on a dev split carved from train
    dev_seed: int = 0
    _fingerprint: DataFingerprint | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def eval_samples(self) -> list[Sample]:
        return self.samples[self.evaluate_on]

    def describe(self) -> dict[str, Any]:
        """What the rows were computed on, for the report: dataset, split, samples per split, the
        feature set the feature models read, the content fingerprint."""
        if self.media_features is not None:
            feature_set: str | None = self.media_features.feature_set
        else:
            feature_set = (feature_set_of(self.features, dataset=self.dataset, feature_set=self.feature_set,
                                          layout=self.features_layout, manifest=self.features_manifest).name
                           if self.features else None)
        described = {"dataset": self.dataset, "evaluate_on": self.evaluate_on,
                     "samples": {split: len(samples) for split, samples in self.samples.items()},
                     "feature_set": feature_set, "fingerprint": self.fingerprint.digest}
        if self.media_features is not None:
            described["features_from_media"] = self.media_features.key()
        return described

    @property
    def fingerprint(self) -> DataFingerprint:
        """The content fingerprint of every manifest and feature file read (computed once): what a
        row was computed on."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(
                self.dataset, self.evaluate_on, manifests={**self.manifest, **self._features_manifest(True)},
                features=self.features, synthetic=self.synthetic, skip_invalid=self.skip_invalid,
                features_layout=self.features_layout, feature_set=self.feature_set)
        return self._fingerprint

    def _features_manifest(self, features: bool) -> dict[str, str]:
        """{"features": the features.npz's manifest} where a feature model reads one."""
        return {"features": self.features_manifest} if features and self.features_manifest else {}

    def training_fingerprint(self, *, features: bool) -> DataFingerprint:
        """The fingerprint of what a model is trained and selected on: the train and valid manifests,
        and the feature file for a feature model. An edit elsewhere (the evaluation split's
        manifest, features a raw-media model never reads) rescores without retraining."""
        manifests = {**{split: self.manifest.get(split) for split in ("train", "valid")},
                     **self._features_manifest(features)}
        dev = {} if self.dev_fraction is None else {"dev_fraction": self.dev_fraction, "dev_seed": self.dev_seed}
        return data_fingerprint(self.dataset, "valid", manifests=manifests,
                                features=self.features if features else None, synthetic=self.synthetic,
                                skip_invalid=self.skip_invalid, **dev,
                                features_layout=self.features_layout if features else None,
                                feature_set=self.feature_set if features else None)


def with_data(settings: dict[str, Any], data: SharedData | None, *, features: bool) -> dict[str, Any]:
    """`settings` with the fingerprint of the data the contender trains on under "data" (unchanged
    without data); `features`: the contender reads the feature file."""
    return settings if data is None else {**settings, "data": data.training_fingerprint(features=features).to_dict()}


@dataclass
class FitInfo:
    """What training left: where, how long, how much memory, how many trainable parameters."""

    checkpoint: str | None
    trainable: dict[str, Any]                # {"trainable": int, "total": int | None, "share": float}
    wall_time_s: float
    peak_memory_mb: float | None
    peak_memory_scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more of what the fit reports (the row's `training`)
    device: str | None = None                # where it trained


@dataclass
class EvalResult:
    """Per-sample outcome of one evaluation protocol; `latency_ms` excludes warm-up."""

    ids: list[str]
    labels: np.ndarray
    preds: np.ndarray
    latency_ms: np.ndarray
    statuses: list[str] | None = None        # parse statuses (generative readouts)
    errors: int = 0                          # samples that failed (recorded in `predictions`' errors file)
    predictions: str | None = None           # per-sample predictions file, if written
    eval_time_s: float = 0.0
    device: str | None = None                # where it was scored
    extra: dict[str, np.ndarray] | None = None  # per-sample numbers beyond the prediction (`Predictions.extra`)


def finished_record(path: str | Path, keys: Sequence[str]) -> dict[str, Any] | None:
    """The JSON record a finished fit left at `path` (a train summary, a fit record), or None
    when there is none, or it is unreadable or lacks one of `keys` (a partial write): then the
    fit counts as unfinished and is run again (it resumes from its own checkpoints)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:
        logger.warning("%s is unreadable (%s): the run counts as unfinished", path, error)
        return None
    missing = [k for k in keys if k not in record] if isinstance(record, dict) else list(keys)
    if missing:
        logger.warning("%s lacks %s: the run counts as unfinished", path, missing)
        return None
    return record


def process_device() -> Any:
    """The `torch.device` this process's models run on: accelerate's for this process (its CUDA
    device when CUDA is available, else the CPU). Every family trains and scores there, so
    latencies and memory figures of one grid compare like with like."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).device


class Contender(Protocol):
    name: str                                # the row's `model`
    family: str                              # "omni" or "classic"
    modalities: tuple[str, ...]              # what its inputs can hold (a text-only readout: text)
    eval_protocols: list[dict[str, Any]] | None  # its own evaluation protocols (None: the comparison's)

    def settings(self, data: SharedData | None = None) -> dict[str, Any]:
        """Everything that defines this contender (goes into the row and its fingerprint); with
        `data`, its fingerprint too (`with_data`)."""

    def training(self, data: SharedData) -> tuple[str, dict[str, Any]]:
        """(name, settings) of the run its fit trains or reuses (its own, or the run of the contender
        whose model it scores): they name the run directory, so contenders that read one model share it."""

    def fit(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path, data: SharedData) -> FitInfo:
        """Train (or reuse a finished run in `run_dir`), selecting on valid under
        `train_protocol.selection_protocol`; resumes an interrupted one."""

    def evaluate(self, fit: FitInfo, protocol: MissingnessProtocol, data: SharedData,
                 out_path: Path) -> EvalResult | None:
        """Score `data.eval_samples` under `protocol`; None on non-main processes."""

    def release(self) -> None:
        """Free the loaded model before the next run."""
