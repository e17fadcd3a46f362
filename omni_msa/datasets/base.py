"""The dataset spec and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

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


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset; a second spec under a registered name is refused."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"dataset {spec.name!r} is registered already")
    _REGISTRY[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {dataset_names()}") from None


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)
