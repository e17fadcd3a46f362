"""The dataset spec and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from omni_msa.registry import Registry

MetricFunction = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the code needs to know about one dataset."""

    name: str
    label_range: tuple[float, float]
    # (p, y) as flat float64 arrays, finite, same length -> {key: unrounded float}
    metrics: MetricFunction
    metric_keys: tuple[str, ...]
    # (column title, metric keys shown in it, joined by " / ") of the papers' result tables
    paper_columns: tuple[tuple[str, tuple[str, ...]], ...]
    # the metrics plotted against missingness rates
    curve_metrics: tuple[str, ...]
    # metrics shown as plain numbers; all others are fractions shown as percentages
    raw_metrics: frozenset[str] = frozenset({"mae", "corr"})
    # the metric checkpoints are selected on, and whether lower is better
    selection_metric: str = "mae"
    lower_is_better: bool = True
    default_feature_sets: tuple[str, ...] = ()
    # per-modality labels (text, audio, vision) beside the multimodal one, as CH-SIMS has
    unimodal_labels: bool = False
    # display names of metric keys (the key itself where absent)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.label_range
        if not low < high:
            raise ValueError(f"dataset {self.name!r}: label range {self.label_range} is empty")
        keys = set(self.metric_keys)
        used = {k for _, ks in self.paper_columns for k in ks} | set(self.curve_metrics) | {self.selection_metric}
        if used - keys:
            raise ValueError(f"dataset {self.name!r}: columns name metrics it does not compute: {sorted(used - keys)}")

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether `value` of the selection metric beats `best` (None: nothing yet)."""
        if best is None or np.isnan(best):
            return not np.isnan(value)
        return value < best if self.lower_is_better else value > best


DATASETS: Registry[DatasetSpec] = Registry("dataset", "omni_msa.datasets")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name, spec)


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    return DATASETS.names()
