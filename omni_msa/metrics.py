"""MMSA-exact regression metrics (design.md section 5), multi-seed aggregation and formatting.

Part of the light shared layer: numpy and scikit-learn only, no torch.

Values are compared as float64. A float32 input keeps its float32 value (float32 0.1 is
0.10000000149..., i.e. just above the 0.1 edge), which is what MMSA's float32 tensors see too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score

logger = logging.getLogger(__name__)

# SIMS class edges: the first bin is [-1, e0], every later bin (e_{i-1}, e_i]; values are
# already clipped to [-1, 1].
_SIMS_EDGES: dict[str, tuple[float, ...]] = {
    "acc2": (0.0,),
    "acc3": (-0.1, 0.1),
    "acc5": (-0.7, -0.1, 0.1, 0.7),
}

MOSI_LABELS = {"mae": "MAE", "corr": "Corr", "acc7": "Acc-7", "acc5": "Acc-5", "acc2_has0": "Acc-2 has0",
               "f1_has0": "F1 has0", "acc2_non0": "Acc-2 non0", "f1_non0": "F1 non0"}
SIMS_LABELS = {"mae": "MAE", "corr": "Corr", "acc2": "Acc-2", "acc3": "Acc-3", "acc5": "Acc-5", "f1": "F1"}


def regression_metrics(preds: ArrayLike, labels: ArrayLike, dataset: str) -> dict[str, float]:
    """The regression metrics of `dataset` (its spec in `omni_msa.datasets`; MMSA's for "mosi",
    "mosei" and "sims").

    Inputs are flattened. Returns unrounded python floats, accuracies and F1 as fractions.
    `corr` is nan (with a logged warning) when predictions or labels are constant; for
    MOSI/MOSEI `acc2_non0`/`f1_non0` are nan (with a logged warning) when every label is 0.
    """
    from omni_msa.datasets import get_dataset

    spec = get_dataset(dataset)
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.size == 0 or y.size == 0:
        raise ValueError(f"empty input: {p.size} predictions, {y.size} labels")
    if p.size != y.size:
        raise ValueError(f"length mismatch: {p.size} predictions vs {y.size} labels")
    for name, values in (("predictions", p), ("labels", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{bad.size} non-finite {name} (first at index {bad[0]}: "
                             f"{values[bad[0]]})")
    return spec.metrics(p, y)


def mosi_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    out = {
        "mae": float(np.mean(np.abs(p - y))),
        "corr": _pearson(p, y),
        "acc7": _rounded_acc(p, y, 3.0),
        "acc5": _rounded_acc(p, y, 2.0),
        "acc2_has0": float(np.mean((p >= 0) == (y >= 0))),
        "f1_has0": _weighted_f1(y >= 0, p >= 0),
    }
    non0 = y != 0
    if non0.any():
        true_pos, pred_pos = y[non0] > 0, p[non0] > 0
        out["acc2_non0"] = float(np.mean(pred_pos == true_pos))
        out["f1_non0"] = _weighted_f1(true_pos, pred_pos)
    else:
        logger.warning("acc2_non0/f1_non0 undefined: every label is 0")
        out["acc2_non0"] = out["f1_non0"] = float("nan")
    return out


def sims_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)
    classes = {key: (_sims_bin(p, edges), _sims_bin(y, edges))
               for key, edges in _SIMS_EDGES.items()}
    out = {"mae": float(np.mean(np.abs(p - y))), "corr": _pearson(p, y)}
    for key in ("acc2", "acc3", "acc5"):
        pred_cls, true_cls = classes[key]
        out[key] = float(np.mean(pred_cls == true_cls))
    out["f1"] = _weighted_f1(classes["acc2"][1], classes["acc2"][0])
    return out


def _sims_bin(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Class index: 0 for v <= edges[0], i for edges[i-1] < v <= edges[i], len(edges) above."""
    cls = np.zeros(values.shape, dtype=np.int64)
    for edge in edges:
        cls += values > edge
    return cls


def _rounded_acc(p: np.ndarray, y: np.ndarray, bound: float) -> float:
    # np.round is half-to-even, as in MMSA: 2.5 -> 2, -0.5 -> -0, 1.5 -> 2.
    p_cls = np.round(np.clip(p, -bound, bound))
    y_cls = np.round(np.clip(y, -bound, bound))
    return float(np.mean(p_cls == y_cls))


def _weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; nan with a logged warning (instead of numpy's RuntimeWarning) if undefined."""
    # Constancy is tested on the raw values: p - mean(p) need not be exactly 0 for constant p.
    for name, values in (("predictions", p), ("labels", y)):
        if np.all(values == values[0]):
            logger.warning("corr undefined: %s are constant (all %r); returning nan",
                           name, float(values[0]))
            return float("nan")
    dp, dy = p - p.mean(), y - y.mean()
    r = np.sum(dp * dy) / np.sqrt(np.sum(dp * dp) * np.sum(dy * dy))
    return float(np.clip(r, -1.0, 1.0))


def undefined_metric_reasons(metrics: Mapping[str, float | None], preds: ArrayLike,
                             labels: ArrayLike) -> dict[str, str]:
    """Why each metric of `regression_metrics` that is not a finite number is undefined, by the
    rules above: Pearson correlation needs predictions and labels that vary; the `_non0`
    metrics need a nonzero label."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    constant = [name for name, values in (("predictions", p), ("labels", y)) if np.all(values == values[0])]
    reasons = {}
    for key, value in metrics.items():
        if value is not None and np.isfinite(value):
            continue
        if key == "corr" and constant:
            reasons[key] = f"constant {' and '.join(constant)}"
        elif key.endswith("_non0") and not np.any(y != 0):
            reasons[key] = "every label is 0"
        else:
            reasons[key] = "undefined on these predictions"
    return reasons


def latency_summary(latency_ms: Sequence[float]) -> dict[str, float]:
    """Mean, median and 95th percentile of per-sample latencies (ms)."""
    latency = np.asarray(latency_ms, dtype=np.float64)
    return {"mean": float(latency.mean()), "p50": float(np.percentile(latency, 50)),
            "p95": float(np.percentile(latency, 95))}


def aggregate_over_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample std (ddof=1) per metric over seeds; std is 0.0 for a single run.

    Every run must have the same keys. nan propagates: a nan in any seed makes that metric's
    mean and std nan (no nan-skipping).
    """
    if not runs:
        raise ValueError("no runs to aggregate")
    keys = list(runs[0])
    expected = set(keys)
    for i, run in enumerate(runs):
        missing, extra = expected - set(run), set(run) - expected
        if missing or extra:
            key = sorted(missing or extra)[0]
            where = f"missing from run {i}" if missing else f"present in run {i} but not in run 0"
            raise ValueError(f"metric {key!r} {where}; every run must have the same metrics")
    out = {}
    for key in keys:
        values = np.array([float(run[key]) for run in runs], dtype=np.float64)
        if np.isnan(values).any():
            out[key] = (float("nan"), float("nan"))
        elif values.size == 1:
            out[key] = (float(values[0]), 0.0)
        else:
            out[key] = (float(values.mean()), float(values.std(ddof=1)))
    return out


def format_metrics(metrics: Mapping[str, float | tuple[float, float]], dataset: str) -> str:
    """One line: accuracies/F1 as percentages (2 decimals), MAE/Corr raw (4 decimals).

    Takes `regression_metrics` output or `aggregate_over_seeds` output (shown as mean +- std).
    Only the dataset's metric keys are shown, in the spec's order; other keys are not printed.
    """
    from omni_msa.datasets import get_dataset

    spec = get_dataset(dataset)
    missing = [key for key in spec.metric_keys if key not in metrics]
    if missing:
        raise ValueError(f"metrics for {dataset!r} lack {missing}")
    parts = []
    for key in spec.metric_keys:
        value = metrics[key]
        scale, digits = (1.0, 4) if key in spec.raw_metrics else (100.0, 2)
        if isinstance(value, tuple):
            mean, std = value
            text = f"{scale * mean:.{digits}f} +- {scale * std:.{digits}f}"
        else:
            text = f"{scale * value:.{digits}f}"
        parts.append(f"{spec.label(key)} {text}")
    return f"[{dataset}: Acc/F1 in %, MAE/Corr raw] " + " | ".join(parts)
