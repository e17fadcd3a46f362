"""The comparison summary: everything computed from the rows of `<results_dir>/runs.jsonl`.

    summary.md    the paper-layout table (mean ± std over seeds on complete data, with the samples
                  each model was scored on and its errors), efficiency, the generative-to-
                  discriminative MAE and latency ratios (the published claim is "not testable"
                  when the generative readout parses fewer than 95 % of its complete-data
                  answers), parse statuses, robustness tables, and the samples the readers
                  skipped; a table whose rows were scored on different samples says so; then
                  `omni_msa.compare.findings`: every pair of models with paired bootstrap
                  intervals, the per-modality-set rows and which modality dominates, the
                  models that read one set on exactly it, and the published figures of the
                  feature set (`data.json`, written by the grid, names it)
    *.png         MAE against the inter and intra rate (band = seed spread), bars per retention
                  mode, latency per model
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.compare.findings import (
    dominance_table,
    modality_set_table,
    pairwise_table,
    published_table,
    set_groups,
    split_rows,
    uncertainty_table,
)
from omni_msa.compare.grid import ROWS_FILE
from omni_msa.datasets import get_dataset
from omni_msa.feature_sets import FeatureSetSpec, get_feature_set
from omni_msa.files import atomic_write_text, read_json, read_jsonl
from omni_msa.report import (
    MODE_ORDER,
    _pyplot,
    aggregate,
    caption,
    dedupe,
    protocol_kind,
    with_sample_set_note,
    write_report,
)

SKIPPED_FILE = "skipped_samples.json"
DATA_FILE = "data.json"          # what the rows were computed on (`SharedData.describe`), written by the grid
# below this share of parsed complete-data answers the generative readout's MAE is mostly the fallback's
MIN_PARSED_SHARE = 0.95


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def _pm(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    if math.isnan(mean):
        return "nan"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def complete_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if protocol_kind(r) == "complete"]


def models(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def paper_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per model on complete data, the columns of the MSA papers' tables."""
    dataset = rows[0]["dataset"]
    spec = get_dataset(dataset)
    columns = spec.paper_columns
    groups = aggregate(rows, by=("model",))
    lines = [f"_{caption(dataset)}_", "",
             "| Model | n | scored samples (errors) | " + " | ".join(c for c, _ in columns) + " |",
             "|---|---:|---:|" + "---:|" * len(columns)]
    for (model,), group in groups.items():
        cells = []
        for _, keys in columns:
            parts = []
            for key in keys:
                mean, std = group["metrics"][key]
                raw = key in spec.raw_metrics
                parts.append(_pm(mean, std, 3 if raw else 1, 1.0 if raw else 100.0))
            cells.append(" / ".join(parts))
        lines.append(f"| {model} | {group['n']} | {scored(r for r in rows if r['model'] == model)} | "
                     + " | ".join(cells) + " |")
    return with_sample_set_note("\n".join(lines) + "\n", rows)


def _span(values: Sequence[Any]) -> str:
    known = sorted(v for v in values if v is not None)
    if not known:
        return "–"
    return str(known[0]) if known[0] == known[-1] else f"{known[0]}-{known[-1]}"


def scored(rows: Iterable[Mapping[str, Any]]) -> str:
    """The samples a model's rows were scored on and their failed samples, e.g. "19 (0)" or
    "18-19 (0-1)" where rows differ; "–" for what old rows do not record."""
    rows = list(rows)
    return f"{_span([r.get('n_samples') for r in rows])} ({_span([r.get('n_errors') for r in rows])})"


def efficiency_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Trainable parameters, per-sample latency, throughput, training time and peak memory."""
    lines = ["| Model | trainable params (share) | latency ms/sample: mean (p50 / p95) | throughput samples/s "
             "| train wall time s | peak memory MiB: train / scoring |", "|---|---:|---:|---:|---:|---:|"]
    for model in models(rows):
        group = [r for r in rows if r["model"] == model]
        trainable = group[0]["trainable"]
        share = trainable.get("share")
        params = f"{trainable.get('trainable', 0):,}" + (f" ({100 * share:.3f} %)" if share is not None else "")
        lat = _mean_std([r["latency_ms"]["mean"] for r in group])
        p50 = _mean_std([r["latency_ms"]["p50"] for r in group])[0]
        p95 = _mean_std([r["latency_ms"]["p95"] for r in group])[0]
        thr = _mean_std([r["throughput_sps"] for r in group])
        trained = [r for r in _one_per_seed(group) if r.get("peak_memory_mb") is not None]
        wall = _pm(*_mean_std([r["wall_time_s"] for r in trained]), 0) if trained else "– (not trained)"
        mem = _pm(*_mean_std([r["peak_memory_mb"] for r in trained]), 0) if trained else "–"
        scoring = [r["eval_peak_memory_mb"] for r in group if r.get("eval_peak_memory_mb") is not None]
        mem += f" / {_pm(*_mean_std(scoring), 0)}" if scoring else " / –"
        lines.append(f"| {model} | {params} | {_pm(*lat, 2)} ({p50:.2f} / {p95:.2f}) | {_pm(*thr, 1)} | "
                     f"{wall} | {mem} |")
    return with_sample_set_note("\n".join(lines) + "\n", rows)


def _one_per_seed(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return list({(r["model"], r["seed"], json.dumps(r["train_protocol"], sort_keys=True)): r for r in rows}.values())


def readout_ratios(rows: Sequence[Mapping[str, Any]], numerator: str = "generative",
                   denominator: str = "discriminative") -> list[dict[str, Any]]:
    """Per evaluation protocol: MAE(numerator) / MAE(denominator) as a ratio of seed means, the
    per-seed ratios (same seed, same masks), and the latency ratio."""
    out = []
    labels = list(dict.fromkeys(r["eval_label"] for r in rows))
    for label in labels:
        num = {r["seed"]: r for r in rows if r["model"] == numerator and r["eval_label"] == label}
        den = {r["seed"]: r for r in rows if r["model"] == denominator and r["eval_label"] == label}
        seeds = sorted(set(num) & set(den))
        if not seeds:
            continue
        mae_num = np.mean([num[s]["metrics"]["mae"] for s in seeds])
        mae_den = np.mean([den[s]["metrics"]["mae"] for s in seeds])
        out.append({
            "eval_label": label, "seeds": seeds, "mae_num": float(mae_num), "mae_den": float(mae_den),
            "mae_ratio": float(mae_num / mae_den),
            "mae_ratio_per_seed": [num[s]["metrics"]["mae"] / den[s]["metrics"]["mae"] for s in seeds],
            "latency_ratio": float(np.mean([num[s]["latency_ms"]["mean"] for s in seeds])
                                   / np.mean([den[s]["latency_ms"]["mean"] for s in seeds])),
        })
    return out


def parsed_answers(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int] | None:
    """(parsed, all) answers over the rows' parse statuses; None when the rows record none
    (a readout that does not parse text). Out-of-range numbers count as parsed."""
    counts = [r["status_counts"] for r in rows if r.get("status_counts")]
    if not counts:
        return None
    total = sum(sum(c.values()) for c in counts)
    return total - sum(c.get("unparsable", 0) for c in counts), total


def _verdict(rows: Sequence[Mapping[str, Any]], complete: Mapping[str, Any], numerator: str) -> str:
    claim = "**Published claim (generative MAE at least twice the discriminative one after equal supervised training): "
    answers = parsed_answers([r for r in rows if r["model"] == numerator and r["eval_label"] == complete["eval_label"]
                              and r["seed"] in complete["seeds"]])
    if answers is not None and answers[1] and answers[0] < MIN_PARSED_SHARE * answers[1]:
        parsed, total = answers
        return (f"{claim}not testable: {100 * (total - parsed) / total:.1f} % unparsable.** On "
                f"{complete['eval_label']} the {numerator} readout parsed {parsed} of its {total} answers (fewer "
                f"than {100 * MIN_PARSED_SHARE:.0f} %), so its MAE ({complete['mae_num']:.3f}) is mostly that of the "
                f"fallback prediction, not of the readout.")
    verdict = "holds" if complete["mae_ratio"] >= 2.0 else "does not hold"
    return (f"{claim}it {verdict} here.** On {complete['eval_label']} the generative "
            f"readout's MAE is {complete['mae_ratio']:.2f}x the discriminative one "
            f"({complete['mae_num']:.3f} vs {complete['mae_den']:.3f}, seeds {complete['seeds']}), "
            f"and it takes {complete['latency_ratio']:.2f}x the discriminative time per sample, "
            f"measured in the same run.")


def ratio_section(rows: Sequence[Mapping[str, Any]], numerator: str = "generative",
                  denominator: str = "discriminative") -> str:
    ratios = readout_ratios(rows, numerator, denominator)
    if not ratios:
        return ""
    lines = ["| Evaluation | MAE generative | MAE discriminative | ratio (of seed means) | ratio per seed "
             "| latency ratio |", "|---|---:|---:|---:|---:|---:|"]
    for r in ratios:
        per_seed = ", ".join(f"{x:.2f}" for x in r["mae_ratio_per_seed"])
        lines.append(f"| {r['eval_label']} | {r['mae_num']:.3f} | {r['mae_den']:.3f} | {r['mae_ratio']:.2f} | "
                     f"{per_seed} | {r['latency_ratio']:.2f} |")
    table = with_sample_set_note("\n".join(lines) + "\n", [r for r in rows if r["model"] in (numerator, denominator)])
    complete = next((r for r in ratios if r["eval_label"] == complete_label(rows)), ratios[0])
    return table + "\n" + _verdict(rows, complete, numerator) + "\n"


def complete_label(rows: Sequence[Mapping[str, Any]]) -> str | None:
    complete = complete_rows(rows)
    return complete[0]["eval_label"] if complete else None


def status_section(rows: Sequence[Mapping[str, Any]]) -> str:
    """Shares of parse statuses per generative readout, on complete data and over all protocols."""
    generative = [r for r in rows if r.get("status_counts")]
    if not generative:
        return ""
    lines = ["| Readout | Evaluation | samples | ok | unparsable | out of range |", "|---|---|---:|---:|---:|---:|"]
    for model in models(generative):
        mine = [r for r in generative if r["model"] == model]
        for label, subset in (("complete data", complete_rows(mine)), ("all protocols", mine)):
            if not subset:
                continue
            totals = {k: sum(r["status_counts"][k] for r in subset) for k in ("ok", "unparsable", "out_of_range")}
            n = sum(totals.values())
            lines.append(f"| {model} | {label} | {n} | " + " | ".join(
                f"{100 * totals[k] / n:.1f} % ({totals[k]})" for k in ("ok", "unparsable", "out_of_range")) + " |")
    never_parsed = [m for m in models(generative)
                    if all(r["status_counts"]["ok"] + r["status_counts"]["out_of_range"] == 0
                           for r in generative if r["model"] == m)]
    if never_parsed:
        lines += ["", f"**No answer of {', '.join(never_parsed)} parsed as a number: its metrics are those of "
                      f"the constant fallback prediction.**"]
    fallback = {r["settings"].get("readout", {}).get("unparsable_fallback", 0.0) for r in generative}
    lines += ["", f"An unparsable answer is scored as {', '.join(str(f) for f in sorted(fallback))} (the "
                  f"readout's `unparsable_fallback`); an out-of-range number is clipped to the label range."]
    return "\n".join(lines) + "\n"


def plot_latency(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Mean per-sample latency per model (bars, ± std over runs) with the p95 marked."""
    plt = _pyplot()
    path = Path(path)
    names = models(rows)
    means, stds, p95 = [], [], []
    for model in names:
        group = [r for r in rows if r["model"] == model]
        m, s = _mean_std([r["latency_ms"]["mean"] for r in group])
        means.append(m)
        stds.append(s)
        p95.append(float(np.mean([r["latency_ms"]["p95"] for r in group])))
    batch = sorted({r.get("eval_batch_size") for r in rows} - {None})
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4.2), dpi=120)
    x = np.arange(len(names))
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8, label="mean (± std over runs)")
    ax.scatter(x, p95, marker="_", s=400, color="black", zorder=3, label="p95")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=15, ha="right", fontsize=9)
    # log scale only when the models differ by orders of magnitude (e.g. classic vs LLM readouts)
    log = max(p95) / max(min(means), 1e-9) > 20
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("latency per sample (ms" + (", log scale)" if log else ")"))
    ax.set_title(f"Per-sample latency, warm-up excluded ({rows[0]['dataset']}, batched"
                 f"{' ' + str(batch[0]) if len(batch) == 1 else ''})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Selection-split MAE against training step per trained readout: the mean over seeds, the band
    their range (None when no row records a curve)."""
    curves: dict[str, dict[int, list[list[float]]]] = {}
    for row in _one_per_seed(rows):
        curve = (row.get("training") or {}).get("curve")
        if curve:
            curves.setdefault(row["model"], {})[row["seed"]] = curve
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for model, by_seed in curves.items():
        steps = sorted(set.intersection(*({int(s) for s, _ in c} for c in by_seed.values())))
        values = np.array([[dict((int(s), v) for s, v in c)[step] for step in steps] for c in by_seed.values()])
        label = f"{model} ({len(by_seed)} seeds)"
        line, = ax.plot(steps, values.mean(axis=0), marker="o", markersize=3, label=label)
        ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    split = {(r.get("training") or {}).get("selected_on", "valid") for r in rows
             if (r.get("training") or {}).get("curve")}
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{'/'.join(sorted(split))} MAE (the selection split)")
    ax.set_title("Learning curves (mean over seeds, band = their range)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _header(rows: Sequence[Mapping[str, Any]], results_dir: Path) -> list[str]:
    command_file = results_dir / "command.txt"
    omni = [r for r in rows if r.get("family") == "omni"]
    lines = ["# Readout comparison", ""]
    if command_file.is_file():
        lines += ["```", command_file.read_text().strip(), "```", ""]
    n = sorted({r["n_samples"] for r in complete_rows(rows) or rows})
    lines.append(f"Dataset **{rows[0]['dataset']}**, rows on the **{rows[0]['split']}** split "
                 f"({'/'.join(map(str, n))} samples), seeds {sorted({r['seed'] for r in rows})}, "
                 f"{len(rows)} rows.")
    if omni:
        settings = omni[0]["settings"]
        backbone, lora = settings.get("backbone", {}), settings.get("lora", {})
        quant = backbone.get("quantization", "none")
        precision = ("4-bit NF4 QLoRA" if quant == "4bit" else "8-bit LoRA" if quant == "8bit"
                     else "LoRA on unquantized weights (float32 on CPU)")
        lines.append(f"Omni readouts: backbone `{backbone.get('name_or_path')}` ({backbone.get('kind')}), "
                     f"{precision}, LoRA r={lora.get('r')} alpha={lora.get('alpha')} dropout={lora.get('dropout')}, "
                     f"the same for every readout (the harness refuses anything else).")
    lines.append("")
    return lines


def _feature_set(results_dir: Path) -> FeatureSetSpec | None:
    """The feature set the classic models read, as the grid recorded it (None: none, or not recorded)."""
    path = results_dir / DATA_FILE
    name = read_json(path).get("feature_set") if path.is_file() else None
    return get_feature_set(name) if name else None


def _paired(title: str, groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """A pairwise section, or a note naming the models whose rows hold no per-sample predictions."""
    if len(groups) < 2:
        return []
    lacking = [m for m, g in groups.items() if not all(r.get("per_sample") for r in g)]
    if lacking:
        return [title, "", f"Not computed: the rows of {', '.join(lacking)} hold no per-sample predictions (written "
                           "before rows recorded them); run the grid again for them.", ""]
    return [title, "", pairwise_table(groups)]


def comparative_sections(rows: Sequence[Mapping[str, Any]], feature_set: FeatureSetSpec | None) -> list[str]:
    """Paired comparisons on complete data, the per-modality-set rows (which modality dominates), the
    models that read one set compared on exactly it, and the feature set's published figures."""
    main, by_set = split_rows(rows)
    complete = complete_rows(main)
    parts = _paired("## Paired comparisons on complete data", {m: [r for r in complete if r["model"] == m]
                                                               for m in models(complete)})
    uncertainty = uncertainty_table(complete)
    parts += ["## Uncertainty", "", uncertainty] if uncertainty else []
    if by_set:
        parts += ["## Each modality set trained alone", "", modality_set_table(rows)]
        dominance = dominance_table(rows)
        parts += ["### Which modality dominates", "", dominance] if dominance else []
        for modality_set in MODE_ORDER[:-1]:
            groups = set_groups(rows, modality_set)
            if any(marked for _, marked in groups.values()):
                parts += _paired(f"### On {modality_set} alone: every model that read it, paired",
                                 {m: g for m, (g, _) in groups.items()})
    if feature_set is not None and feature_set.published:
        parts += [f"## Published figures on `{feature_set.name}`", "", published_table(rows, feature_set)]
    return parts


def write_summary(results_dir: str | Path) -> Path:
    """Write summary.md and the plots into `results_dir` from its runs.jsonl (and the samples the
    readers skipped, from skipped_samples.json when the grid wrote one)."""
    results_dir = Path(results_dir)
    every_row = dedupe(read_jsonl(results_dir / ROWS_FILE))
    if not every_row:
        raise ValueError(f"{results_dir / ROWS_FILE}: no rows")
    skipped_file = results_dir / SKIPPED_FILE
    reader_errors = read_json(skipped_file) if skipped_file.is_file() else []
    rows = split_rows(every_row)[0]           # the main training; modality-set rows have their own sections
    dataset = rows[0]["dataset"]
    complete = complete_rows(rows)
    parts = _header(every_row, results_dir)
    if complete:
        parts += ["## Complete data", "", paper_table(complete)]
        parts += ["## Efficiency", "", "_Latency: forward (discriminative, classic) or forward plus greedy "
                  "decoding (generative) per sample, batched, warm-up excluded; train wall time and peak "
                  "memory (peak RSS on CPU, CUDA max allocated on GPU) per training run and per scoring pass._", "",
                  efficiency_table(complete)]
    parts += comparative_sections(every_row, _feature_set(results_dir))
    ratios = ratio_section(rows)
    if ratios:
        parts += ["## Generative vs discriminative readout", "", ratios]
    statuses = status_section(rows)
    if statuses:
        parts += ["## Generative answers: parse statuses", "", statuses]
    report = write_report(rows, results_dir, metrics=get_dataset(dataset).curve_metrics)
    plots = report["plots"] + [plot_latency(complete or rows, results_dir / "latency.png")]
    curves = plot_learning_curves(complete, results_dir / "learning_curves.png")
    plots += [curves] if curves else []
    parts += ["## Under missing modalities", "", report["markdown"]]
    parts += ["## Plots", ""] + [f"- `{p.name}`" for p in plots] + [""]
    if reader_errors:
        parts += ["## Samples the readers skipped", "", "| id | field | reason |", "|---|---|---|"]
        parts += [f"| {e['id']} | {e['field']} | {e['reason']} |" for e in reader_errors] + [""]
    summary = results_dir / "summary.md"
    atomic_write_text(summary, "\n".join(parts))
    return summary
