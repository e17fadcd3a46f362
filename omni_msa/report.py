"""Result rows, and the tables and plots computed from them (any number of models, seeds and
protocols).

A row (`ResultRow`, built by `result_row`) is what the comparison harness (`omni_msa.compare`),
`classic_msa.experiment` and `classic_msa.sweep` write: one evaluation of one trained model
under one protocol. The readers need at least `model`, `dataset`, `seed`, `eval_protocol` (a
`MissingnessProtocol.to_dict()`), `eval_label` and `metrics` (`omni_msa.metrics.regression_metrics`
output: fractions), so rows written before the schema (without `sample_set`, `family`, ...)
still render. Everything here is computed from the rows passed in, nothing is cached.

Aggregation: rows are grouped by (model, eval_label) and each group's metrics go through
`omni_msa.metrics.aggregate_over_seeds` (mean and sample std over the group's rows, i.e. over
training seeds x evaluation seeds). Tables print accuracies and F1 as percentages and MAE/Corr
raw (design.md section 5), and their captions say so. A table whose rows were not all scored
on the same samples carries a note naming the models that differ (`sample_set_note`).

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.missing import MissingnessProtocol, modality_set_name
from omni_msa.data.record import MODALITIES
from omni_msa.datasets import get_dataset
from omni_msa.files import json_safe
from omni_msa.metrics import aggregate_over_seeds, latency_summary, regression_metrics, undefined_metric_reasons
from omni_msa.parse import StatusCounts

# The seven retention modes in the order of the SG-DTAM / Senti-iFusion tables.
MODE_ORDER = ("text", "audio", "vision", "text+audio", "text+vision", "audio+vision", "text+audio+vision")


def is_raw(key: str, dataset: str) -> bool:
    """Whether the dataset shows `key` as a plain number (MAE, Corr) rather than a percentage."""
    return key in get_dataset(dataset).raw_metrics


def metric_scale(key: str, dataset: str) -> float:
    """1 for metrics shown as plain numbers, 100 for fractions shown as % (accuracies, F1)."""
    return 1.0 if is_raw(key, dataset) else 100.0


def metric_label(key: str, dataset: str) -> str:
    return get_dataset(dataset).label(key)


def metric_axis_label(key: str, dataset: str) -> str:
    return metric_label(key, dataset) + ("" if is_raw(key, dataset) else " (%)")


def caption(dataset: str | None = None, n: str | None = None) -> str:
    where = f"{dataset}: " if dataset else ""
    count = f"n = {n} per cell" if n else "n in the table"
    return (f"{where}accuracies and F1 in %, MAE and Corr raw (not %); mean ± std over the rows of "
            f"each cell (training seeds x evaluation seeds; {count}).")


# --- rows ----------------------------------------------------------------------------------

@dataclass
class ResultRow:
    """One evaluation of one trained model under one protocol. `n_samples` samples were scored
    (`sample_set`: a hash of their sorted ids) and `n_errors` failed; a metric that is not a
    number is null, with the reason in `metric_notes`. `training` holds what the fit reported
    beyond the fields here (train steps, best valid MAE, skipped samples)."""

    model: str
    family: str
    dataset: str
    seed: int
    split: str
    train_protocol: dict[str, Any]
    eval_protocol: dict[str, Any]
    eval_label: str
    metrics: dict[str, float | None]
    n_samples: int
    sample_set: str
    n_errors: int = 0
    metric_notes: dict[str, str] = field(default_factory=dict)
    status_counts: dict[str, int] | None = None
    latency_ms: dict[str, float] | None = None
    throughput_sps: float | None = None
    eval_batch_size: int | None = None
    trainable: dict[str, Any] | None = None
    n_params: int | None = None
    peak_memory_mb: float | None = None
    peak_memory_scope: str | None = None
    eval_peak_memory_mb: float | None = None
    wall_time_s: float | None = None
    eval_time_s: float | None = None
    device: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    checkpoint: str | None = None
    predictions: str | None = None
    run_key: str | None = None
    grid: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] | None = None
    """The modalities the model's inputs can hold (a text-only readout: ["text"])."""
    per_sample: dict[str, Any] | None = None
    """{"ids", "preds", "labels"[, "extra": {name: values}]} in scoring order (numbers to 5 decimals):
    what paired comparisons between models resample (`omni_msa.compare.paired`) and the uncertainty
    section reads."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (NaN -> null), the same as the row read back from its file."""
        return json_safe(asdict(self))


ROW_FIELDS = tuple(f.name for f in fields(ResultRow))


def sample_set(ids: Iterable[str]) -> str:
    """A short hash of a set of sample ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def sample_set_note(rows: Sequence[Mapping[str, Any]]) -> str:
    """"" when every row was scored on the same samples, else a Markdown note naming the models
    whose rows differ from the most common sample set. Rows written before `sample_set` existed
    are compared by `n_samples` alone."""
    signatures = [(row.get("n_samples"), row.get("sample_set")) for row in rows]
    if not signatures:
        return ""
    ref_n = Counter(n for n, _ in signatures).most_common(1)[0][0]
    known = Counter(ids for n, ids in signatures if n == ref_n and ids)
    ref_ids = known.most_common(1)[0][0] if known else None
    differ: dict[str, dict[str, Any]] = {}
    for row, (n, ids) in zip(rows, signatures):
        if n != ref_n or (ids and ref_ids and ids != ref_ids):
            seen = differ.setdefault(row["model"], {"n": set(), "errors": 0})
            seen["n"].add(n)
            seen["errors"] += row.get("n_errors") or 0
    if not differ:
        return ""
    described = []
    for model, seen in differ.items():
        counts = "/".join(str(n) for n in sorted(seen["n"], key=str))
        described.append(f"{model} ({counts} samples{', other ids' if seen['n'] == {ref_n} else ''}"
                         f"{', ' + str(seen['errors']) + ' errors' if seen['errors'] else ''})")
    return (f"**Not scored on the same samples: {', '.join(described)}; the other rows: {ref_n} samples. "
            f"Those rows' metrics are not comparable with the rest.**\n")


def result_row(*, model: str, family: str, dataset: str, seed: int, split: str,
               train_protocol: MissingnessProtocol, evaluation: MissingnessProtocol, ids: Sequence[str],
               preds: Sequence[float], labels: Sequence[float], latency_ms: Sequence[float] | None = None,
               statuses: Sequence[str] | None = None, extra: Mapping[str, Sequence[float]] | None = None,
               **other: Any) -> dict[str, Any]:
    """The row of one evaluation: metrics, sample count and set, latency statistics and parse
    statuses computed from the per-sample outcome (`extra`: per-sample numbers such as a predicted
    std, kept in `per_sample`); `other` are the other `ResultRow` fields."""
    preds, labels = np.asarray(preds, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    metrics = regression_metrics(preds, labels, dataset)
    latency = latency_summary(latency_ms) if latency_ms is not None and len(latency_ms) else None
    throughput = 1000.0 / latency["mean"] if latency is not None and latency["mean"] > 0 else None
    return ResultRow(model=model, family=family, dataset=dataset, seed=seed, split=split,
                     train_protocol=train_protocol.to_dict(), eval_protocol=evaluation.to_dict(),
                     eval_label=evaluation.label, metrics=metrics, n_samples=len(ids), sample_set=sample_set(ids),
                     metric_notes=undefined_metric_reasons(metrics, preds, labels), latency_ms=latency,
                     throughput_sps=throughput,
                     status_counts=StatusCounts.of(statuses).counts if statuses is not None else None,
                     per_sample={"ids": list(ids), "preds": [round(float(p), 5) for p in preds],
                                 "labels": [float(y) for y in labels],
                                 **({"extra": {k: [round(float(v), 5) for v in values] for k, values in extra.items()}}
                                    if extra else {})},
                     **other).to_dict()


def protocol_kind(row: Mapping[str, Any]) -> str:
    """"mode" (a fixed retention mode), "inter" or "intra" (which rate varies) or "complete"."""
    p = row["eval_protocol"]
    if p.get("keep") is not None:
        return "mode"
    if p.get("intra_rate") not in (0, 0.0, None) and not p.get("inter_rate"):
        return "intra"
    if p.get("inter_rate"):
        return "inter"
    return "complete"


def mode_name(row: Mapping[str, Any]) -> str:
    keep = row["eval_protocol"].get("keep")
    return modality_set_name(keep if keep is not None else MODALITIES)


def dedupe(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with a repeated (model, dataset, seed, eval_protocol, checkpoint) dropped (the first is
    kept), e.g. the complete-data point that an inter and an intra sweep both contain."""
    seen, out = set(), []
    for row in rows:
        key = (row["model"], row["dataset"], row["seed"], json.dumps(row["eval_protocol"], sort_keys=True),
               row.get("checkpoint"))
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _unique(values: Iterable[Any]) -> list[Any]:
    seen, out = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def aggregate(rows: Sequence[Mapping[str, Any]], by: Sequence[str] = ("model", "eval_label")
              ) -> dict[tuple, dict[str, Any]]:
    """{group key: {"n": rows, "metrics": {key: (mean, std)}, "row": first row}} in first-seen order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    return {key: {"n": len(group), "metrics": aggregate_over_seeds([_numbers(r["metrics"]) for r in group]),
                  "row": group[0]}
            for key, group in groups.items()}


def _numbers(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """A row's metrics with null (a metric that was not a number) read as nan."""
    return {k: math.nan if v is None else v for k, v in metrics.items()}


def _dataset(rows: Sequence[Mapping[str, Any]]) -> str:
    datasets = _unique(r["dataset"] for r in rows)
    if len(datasets) != 1:
        raise ValueError(f"rows mix datasets {datasets}; make one table per dataset")
    return datasets[0]


def _fmt(value: tuple[float, float], key: str, dataset: str, digits: int | None = None) -> str:
    mean, std = value
    scale = metric_scale(key, dataset)
    digits = digits if digits is not None else (4 if is_raw(key, dataset) else 2)
    if math.isnan(mean):
        return "nan"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


# --- tables --------------------------------------------------------------------------------

def metrics_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None,
                  title: str | None = None) -> str:
    """Markdown: one line per (model, protocol), one column per metric, mean ± std."""
    if not rows:
        raise ValueError("no rows")
    dataset = _dataset(rows)
    metrics = list(metrics or get_dataset(dataset).metric_keys)
    groups = aggregate(rows)
    head = ["Model", "Protocol", "n"] + [metric_axis_label(k, dataset) for k in metrics]
    lines = []
    if title:
        lines.append(f"**{title}**")
        lines.append("")
    lines += [f"_{caption(dataset)}_", "", "| " + " | ".join(head) + " |",
              "|" + "|".join(["---"] * 3 + ["---:"] * len(metrics)) + "|"]
    for (model, label), group in groups.items():
        cells = [model, label, str(group["n"])] + [_fmt(group["metrics"][k], k, dataset) for k in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return with_sample_set_note("\n".join(lines) + "\n", rows)


def pivot_table(rows: Sequence[Mapping[str, Any]], metric: str, title: str | None = None) -> str:
    """Markdown: one line per protocol, one column per model, `metric` mean ± std."""
    if not rows:
        raise ValueError("no rows")
    dataset = _dataset(rows)
    groups = aggregate(rows)
    models = _unique(m for m, _ in groups)
    labels = _unique(lab for _, lab in groups)
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines += [f"_{metric_axis_label(metric, dataset)}; {caption(dataset, _n_per_point(rows))}_", "",
              "| Protocol | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for label in labels:
        cells = [_fmt(groups[(m, label)]["metrics"][metric], metric, dataset) if (m, label) in groups else "–"
                 for m in models]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return with_sample_set_note("\n".join(lines) + "\n", rows)


def with_sample_set_note(table: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """`table` followed by the sample-set note of its rows, if they differ."""
    note = sample_set_note(rows)
    return table + ("\n" + note if note else "")


# --- plots ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def rate_series(rows: Sequence[Mapping[str, Any]], metric: str, rate: str = "inter_rate"
                ) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """{model: (rates, means, stds)} of `metric` (on the table scale) against eval_protocol[rate]."""
    groups = aggregate(rows, by=("model", "eval_label"))
    scale = metric_scale(metric, _dataset(rows))
    series: dict[str, list[tuple[float, float, float]]] = {}
    for (model, _), group in groups.items():
        x = float(group["row"]["eval_protocol"][rate])
        mean, std = group["metrics"][metric]
        series.setdefault(model, []).append((x, scale * mean, scale * std))
    out = {}
    for model, points in series.items():
        points.sort()
        out[model] = ([p[0] for p in points], [p[1] for p in points], [p[2] for p in points])
    return out


def plot_rate_curves(rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, *,
                     rate: str = "inter_rate", title: str | None = None) -> Path:
    """`metric` against the missing rate, one line per model, band = ± std over the rows."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series = rate_series(rows, metric, rate)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for i, (model, (x, mean, std)) in enumerate(series.items()):
        # marker and dash differ per line, so lines that coincide stay distinguishable
        line, = ax.plot(x, mean, marker="osD^vP"[i % 6], markersize=4, linestyle=("-", "--", ":", "-.")[i % 4],
                        label=model)
        lo = [m - s for m, s in zip(mean, std)]
        hi = [m + s for m, s in zip(mean, std)]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    rate_name = {"inter_rate": "inter-modality missing rate", "intra_rate": "intra-modality missing rate"}
    ax.set_xlabel(f"{rate_name.get(rate, rate)} (fraction of samples)" if rate == "inter_rate"
                  else f"{rate_name.get(rate, rate)} (fraction of elements)")
    dataset = _dataset(rows)
    ax.set_ylabel(metric_axis_label(metric, dataset))
    n = _n_per_point(rows)
    ax.set_title(title or f"{metric_label(metric, dataset)} vs {rate_name.get(rate, rate)} ({dataset}, "
                 f"band = ±1 std, n={n})", fontsize=10)
    ax.grid(True, alpha=0.3)
    if not is_raw(metric, dataset) or metric == "mae":
        ax.set_ylim(bottom=0)                       # MAE, accuracies and F1 are non-negative
    ax.legend(fontsize=9, frameon=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_mode_bars(rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, *,
                   title: str | None = None) -> Path:
    """Grouped bars: the retention modes on x, one bar per model, error bar = ± std."""
    plt = _pyplot()
    import numpy as np
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = aggregate([r for r in rows if protocol_kind(r) in ("mode", "complete")], by=("model", "eval_label"))
    dataset = _dataset(rows)
    scale = metric_scale(metric, dataset)
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for (model, _), group in groups.items():
        mean, std = group["metrics"][metric]
        table.setdefault(model, {})[mode_name(group["row"])] = (scale * mean, scale * std)
    modes = [m for m in MODE_ORDER if any(m in v for v in table.values())]
    models = list(table)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(modes))
    fig, ax = plt.subplots(figsize=(8.0, 4.6), dpi=120)
    for i, model in enumerate(models):
        means = [table[model].get(m, (np.nan, 0.0))[0] for m in modes]
        stds = [table[model].get(m, (np.nan, 0.0))[1] for m in modes]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=model)
    ax.set_xticks(x)
    ax.set_xticklabels([m.replace("+", "+\n") for m in modes], fontsize=8)
    splits = "/".join(sorted({str(r.get("split")) for r in rows if r.get("split")})) or "evaluation"
    ax.set_xlabel(f"retained modalities (all others dropped for every {splits} sample)")
    ax.set_ylabel(metric_axis_label(metric, dataset))
    ax.set_title(title or f"{metric_label(metric, dataset)} per retention mode ({dataset}, "
                 f"error bar = ±1 std, n={_n_per_point(rows)})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if not is_raw(metric, dataset) or metric == "mae":
        ax.set_ylim(bottom=0)                       # MAE, accuracies and F1 are non-negative
    # legend below the axes, so it never covers a bar
    ax.legend(fontsize=9, ncols=min(len(models), 4), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _n_per_point(rows: Sequence[Mapping[str, Any]]) -> str:
    ns = sorted({g["n"] for g in aggregate(rows).values()})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def write_report(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, *, prefix: str = "",
                 metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """The tables and plots for whatever grids the rows cover: rate curves for inter/intra rows
    (the complete-data point included), bar charts for retention-mode rows; `metrics` defaults to
    the dataset's curve metrics. Returns {"markdown": str, "plots": [paths]}."""
    out_dir = Path(out_dir)
    rows = dedupe(rows)
    if not rows:
        return {"markdown": "", "plots": []}
    metrics = metrics or get_dataset(_dataset(rows)).curve_metrics
    complete = [r for r in rows if protocol_kind(r) == "complete"]
    parts, plots = [], []
    for kind, rate in (("inter", "inter_rate"), ("intra", "intra_rate")):
        subset = [r for r in rows if protocol_kind(r) == kind]
        if not subset:
            continue
        subset = complete + subset
        for metric in metrics:
            plots.append(plot_rate_curves(subset, metric, out_dir / f"{prefix}{kind}_{metric}.png", rate=rate))
            parts.append(pivot_table(subset, metric, title=f"{metric_label(metric, _dataset(subset))} vs {kind} rate"))
    modes = [r for r in rows if protocol_kind(r) == "mode"]
    if modes:
        for metric in metrics:
            plots.append(plot_mode_bars(modes, metric, out_dir / f"{prefix}modes_{metric}.png"))
            title = f"{metric_label(metric, _dataset(modes))} per retention mode"
            parts.append(pivot_table(modes, metric, title=title))
    return {"markdown": "\n".join(parts), "plots": plots}
