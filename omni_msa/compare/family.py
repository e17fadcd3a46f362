"""The interface every model family implements to take part in a comparison.

A contender is one line of the comparison: an omni readout or a classic model. The harness
calls `fit` once per (seed, training protocol) and `evaluate` once per evaluation protocol;
metrics, latency statistics and rows are computed by the harness from what `evaluate` returns,
the same way for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample


@dataclass
class SharedData:
    """The samples every contender sees: manifests for raw-media models and, where there are
    features of the same ids, an MMSA pickle for feature models."""

    dataset: str
    evaluate_on: str
    manifest: dict[str, str]                 # split -> manifest path
    samples: dict[str, list[Sample]]         # split -> raw-media samples (train, valid, eval split)
    features: str | None = None              # MMSA pickle path
    features_layout: str | None = None
    skip_invalid: bool = False
    media_cache_dir: str | None = None
    reader_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eval_samples(self) -> list[Sample]:
        return self.samples[self.evaluate_on]


@dataclass
class FitInfo:
    """What training left: where, how long, how much memory, how many trainable parameters."""

    checkpoint: str | None
    trainable: dict[str, Any]                # {"trainable": int, "total": int | None, "share": float}
    wall_time_s: float
    peak_memory_mb: float | None
    peak_memory_scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


class Contender(Protocol):
    name: str                                # the row's `model`
    family: str                              # "omni" or "classic"

    def settings(self) -> dict[str, Any]:
        """Everything that defines this contender (goes into the row and its fingerprint)."""

    def fit(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path, data: SharedData) -> FitInfo:
        """Train (or reuse a finished run in `run_dir`); resumes an interrupted one."""

    def evaluate(self, fit: FitInfo, protocol: MissingnessProtocol, data: SharedData,
                 out_path: Path) -> EvalResult | None:
        """Score `data.eval_samples` under `protocol`; None on non-main processes."""

    def release(self) -> None:
        """Free the loaded model before the next run."""
