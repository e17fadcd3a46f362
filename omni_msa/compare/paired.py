"""Paired comparisons of two models scored on the same utterances: the difference of a per-sample
loss, with percentile bootstrap intervals that resample utterances and, because utterances of one
video are not independent (one speaker, one topic), that resample whole videos.

A model's per-sample loss is averaged over its rows (its seeds) first, so the mean difference is
exactly the difference of the two models' seed-mean metrics, and the interval says how much of it
the choice of utterances could produce. The resampling draws come from a fixed generator: the same
rows give the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_msa.data.record import video_of

BOOTSTRAP_DRAWS = 10_000
BOOTSTRAP_SEED = 0


def absolute_error(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.abs(preds - labels)


def binary_error_has0(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 where the has0 binary class (negative vs non-negative) is wrong: Acc-2 has0 = 1 - its mean."""
    return ((preds >= 0) != (labels >= 0)).astype(np.float64)


LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mae": absolute_error, "acc2_has0": binary_error_has0}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class PairedDifference:
    """mean loss(a) - loss(b) over `n` utterances of `n_videos` videos (negative: a is better)."""

    metric: str
    difference: float
    by_utterance: Interval
    by_video: Interval
    n: int
    n_videos: int


def per_sample_loss(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """{sample id: the loss averaged over `rows`} from the rows' `per_sample` records (the seeds of one
    model under one protocol), for the ids every row scored (a sample that failed in one seed is left out)."""
    loss = LOSSES[metric]
    per_row = []
    for row in rows:
        record = row.get("per_sample")
        if not record:
            raise ValueError(f"{row['model']} seed {row['seed']} {row['eval_label']}: the row holds no per-sample "
                             "predictions (written before they were recorded): run the grid again for it")
        values = loss(np.asarray(record["preds"], dtype=np.float64), np.asarray(record["labels"], dtype=np.float64))
        per_row.append(dict(zip(record["ids"], values.tolist())))
    common = set.intersection(*(set(losses) for losses in per_row))
    return {i: float(np.mean([losses[i] for losses in per_row])) for i in sorted(common)}


def paired_difference(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], metric: str, *,
                      level: float = 0.95, draws: int = BOOTSTRAP_DRAWS) -> PairedDifference:
    """Model a against model b on the utterances both were scored on (`n`: how many)."""
    a, b = per_sample_loss(rows_a, metric), per_sample_loss(rows_b, metric)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError(f"{rows_a[0]['model']} and {rows_b[0]['model']} share no scored sample")
    diff = np.array([a[i] - b[i] for i in ids])
    videos = np.array([video_of(i) for i in ids])
    return PairedDifference(metric=metric, difference=float(diff.mean()),
                            by_utterance=bootstrap_interval(diff, None, level=level, draws=draws),
                            by_video=bootstrap_interval(diff, videos, level=level, draws=draws),
                            n=len(ids), n_videos=len(set(videos)))


def bootstrap_interval(values: np.ndarray, groups: np.ndarray | None, *, level: float = 0.95,
                       draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Percentile interval of the mean of `values` under resampling with replacement: of the values,
    or (`groups`) of whole groups, each draw's mean taken over every value of the drawn groups."""
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        sums, sizes = values, np.ones_like(values)
    else:
        _, index = np.unique(groups, return_inverse=True)
        sums, sizes = np.bincount(index, weights=values), np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(draws, len(sums)))
    means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(low), float(high))
