"""Tables and plots from result rows (any number of models, seeds and protocols).

A row is what the comparison harness (`omni_msa.compare`), `classic_msa.experiment` and
`classic_msa.sweep` write: at least `model`, `dataset`, `seed`, `eval_protocol` (a
`MissingnessProtocol.to_dict()`), `eval_label` and `metrics` (`omni_msa.metrics.regression_metrics`
output: fractions). Everything here is computed from the rows passed in, nothing is cached.

Aggregation: rows are grouped by (model, eval_label) and each group's metrics go through
`omni_msa.metrics.aggregate_over_seeds` (mean and sample std over the group's rows, i.e. over
training seeds x evaluation seeds). Tables print accuracies and F1 as percentages and MAE/Corr
raw (design.md section 5), and their captions say so.

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omni_msa.data.missing import modality_set_name
from omni_msa.data.record import MODALITIES
from omni_msa.datasets import get_dataset
from omni_msa.metrics import aggregate_over_seeds

LABELS = {
    "mae": "MAE", "corr": "Corr", "acc7": "Acc-7", "acc5": "Acc-5", "acc3": "Acc-3",
    "acc2": "Acc-2", "f1": "F1", "acc2_has0": "Acc-2 has0", "f1_has0": "F1 has0",
    "acc2_non0": "Acc-2 non0", "f1_non0": "F1 non0",
}
RAW_METRICS = frozenset({"mae", "corr"})

# The seven retention modes in the order of the SG-DTAM / Senti-iFusion tables.
MODE_ORDER = ("text", "audio", "vision", "text+audio", "text+vision", "audio+vision", "text+audio+vision")


def metric_scale(key: str) -> float:
    """100 for accuracies and F1 (shown as %), 1 for MAE and Corr."""
    return 1.0 if key in RAW_METRICS else 100.0


def metric_axis_label(key: str) -> str:
    return f"{LABELS.get(key, key)}" + ("" if key in RAW_METRICS else " (%)")


def caption(dataset: str | None = None, n: str | None = None) -> str:
    where = f"{dataset}: " if dataset else ""
    count = f"n = {n} per cell" if n else "n in the table"
    return (f"{where}accuracies and F1 in %, MAE and Corr raw (not %); mean ± std over the rows of "
            f"each cell (training seeds x evaluation seeds; {count}).")


# --- rows ----------------------------------------------------------------------------------

def read_rows(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The rows of JSONL files, in order; a missing file has none, and a last line without its
    newline (the partial write of a killed run) is not a row."""
    rows = []
    for path in map(Path, paths):
        if path.is_file():
            text = path.read_text()
            rows += [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]
    return rows


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


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
    return {key: {"n": len(group), "metrics": aggregate_over_seeds([r["metrics"] for r in group]),
                  "row": group[0]}
            for key, group in groups.items()}


def _dataset(rows: Sequence[Mapping[str, Any]]) -> str:
    datasets = _unique(r["dataset"] for r in rows)
    if len(datasets) != 1:
        raise ValueError(f"rows mix datasets {datasets}; make one table per dataset")
    return datasets[0]


def _fmt(value: tuple[float, float], key: str, digits: int | None = None) -> str:
    mean, std = value
    scale = metric_scale(key)
    digits = digits if digits is not None else (4 if key in RAW_METRICS else 2)
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
    head = ["Model", "Protocol", "n"] + [metric_axis_label(k) for k in metrics]
    lines = []
    if title:
        lines.append(f"**{title}**")
        lines.append("")
    lines += [f"_{caption(dataset)}_", "", "| " + " | ".join(head) + " |",
              "|" + "|".join(["---"] * 3 + ["---:"] * len(metrics)) + "|"]
    for (model, label), group in groups.items():
        cells = [model, label, str(group["n"])] + [_fmt(group["metrics"][k], k) for k in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    lines += [f"_{metric_axis_label(metric)}; {caption(dataset, _n_per_point(rows))}_", "",
              "| Protocol | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for label in labels:
        cells = [_fmt(groups[(m, label)]["metrics"][metric], metric) if (m, label) in groups else "–"
                 for m in models]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    series: dict[str, list[tuple[float, float, float]]] = {}
    for (model, _), group in groups.items():
        x = float(group["row"]["eval_protocol"][rate])
        mean, std = group["metrics"][metric]
        series.setdefault(model, []).append((x, metric_scale(metric) * mean, metric_scale(metric) * std))
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
    ax.set_ylabel(metric_axis_label(metric))
    n = _n_per_point(rows)
    ax.set_title(title or f"{LABELS.get(metric, metric)} vs {rate_name.get(rate, rate)} ({_dataset(rows)}, "
                 f"band = ±1 std, n={n})", fontsize=10)
    ax.grid(True, alpha=0.3)
    if metric not in RAW_METRICS or metric == "mae":
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
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for (model, _), group in groups.items():
        mean, std = group["metrics"][metric]
        table.setdefault(model, {})[mode_name(group["row"])] = (metric_scale(metric) * mean, metric_scale(metric) * std)
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
    ax.set_xlabel("retained modalities (all others dropped for every test sample)")
    ax.set_ylabel(metric_axis_label(metric))
    ax.set_title(title or f"{LABELS.get(metric, metric)} per retention mode ({_dataset(rows)}, "
                 f"error bar = ±1 std, n={_n_per_point(rows)})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if metric not in RAW_METRICS or metric == "mae":
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
                 metrics: Sequence[str] = ("mae", "acc5", "f1_non0")) -> dict[str, Any]:
    """The tables and plots for whatever grids the rows cover: rate curves for inter/intra rows
    (the complete-data point included), bar charts for retention-mode rows. Returns
    {"markdown": str, "plots": [paths]}."""
    out_dir = Path(out_dir)
    rows = dedupe(rows)
    complete = [r for r in rows if protocol_kind(r) == "complete"]
    parts, plots = [], []
    for kind, rate in (("inter", "inter_rate"), ("intra", "intra_rate")):
        subset = [r for r in rows if protocol_kind(r) == kind]
        if not subset:
            continue
        subset = complete + subset
        for metric in metrics:
            plots.append(plot_rate_curves(subset, metric, out_dir / f"{prefix}{kind}_{metric}.png", rate=rate))
            parts.append(pivot_table(subset, metric, title=f"{LABELS[metric]} vs {kind} rate"))
    modes = [r for r in rows if protocol_kind(r) == "mode"]
    if modes:
        for metric in metrics:
            plots.append(plot_mode_bars(modes, metric, out_dir / f"{prefix}modes_{metric}.png"))
            parts.append(pivot_table(modes, metric, title=f"{LABELS[metric]} per retention mode"))
    return {"markdown": "\n".join(parts), "plots": plots}
