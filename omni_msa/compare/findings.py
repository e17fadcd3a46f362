"""The comparison summary's comparative sections, each statement with its paired interval
(`omni_msa.compare.paired`): every pair of models on complete data, each modality set trained
alone (which modality dominates), the models that read one set on exactly that set, and the
published figures of the feature set the classic models read.

Rows trained on a fixed modality set (`train_protocol.keep`, the comparison's `modality_sets`) are
"set rows"; the others are the main rows that the paper-layout and robustness tables use. A model
whose inputs (the row's `inputs`) are exactly one set (a text-only readout) is never trained on it
alone: its main rows evaluated on that set stand for it, marked †. A model not (yet) trained on a
set has no cell for it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from omni_msa.compare.paired import PairedDifference, paired_difference
from omni_msa.data.missing import modality_set_name
from omni_msa.feature_sets import FeatureSetSpec
from omni_msa.report import MODE_ORDER, mode_name, protocol_kind

Rows = Sequence[Mapping[str, Any]]
ALL = MODE_ORDER[-1]
SINGLE = MODE_ORDER[:3]
DAGGER = "†"


def training_set(row: Mapping[str, Any]) -> str | None:
    """The modality set a row's model was trained on alone, None for the main training."""
    keep = row["train_protocol"].get("keep")
    return modality_set_name(keep) if keep else None


def split_rows(rows: Rows) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(main rows, set rows)."""
    return [r for r in rows if training_set(r) is None], [r for r in rows if training_set(r) is not None]


def _models(rows: Rows) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _mae(rows: Rows) -> tuple[float, float]:
    values = np.array([r["metrics"]["mae"] for r in rows], dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _metric(rows: Rows, key: str, scale: float = 100.0) -> str:
    values = np.array([r["metrics"][key] if r["metrics"][key] is not None else math.nan for r in rows])
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{scale * values.mean():.1f} ± {scale * std:.1f}"


def _reads_only(rows: Rows, modality_set: str) -> bool:
    """Whether the rows' model takes exactly `modality_set` as input (rows without `inputs`: unknown, no)."""
    inputs = rows[0].get("inputs") if rows else None
    return inputs is not None and modality_set_name(inputs) == modality_set


def set_groups(rows: Rows, modality_set: str) -> dict[str, tuple[list[Mapping[str, Any]], bool]]:
    """{model: (its rows for `modality_set`, marked)}: rows trained and evaluated on the set; the
    complete-data rows for all three; for a model whose inputs are that set, its main rows evaluated
    on it (marked)."""
    main, by_set = split_rows(rows)
    out: dict[str, tuple[list[Mapping[str, Any]], bool]] = {}
    for model in _models(rows):
        mine = [r for r in main if r["model"] == model]
        if modality_set == ALL:
            chosen, marked = [r for r in mine if protocol_kind(r) == "complete"], False
        elif _reads_only(mine, modality_set):
            chosen = [r for r in mine if protocol_kind(r) == "mode" and mode_name(r) == modality_set]
            marked = True
        else:
            chosen = [r for r in by_set if r["model"] == model and training_set(r) == modality_set]
            marked = False
        if chosen:
            out[model] = (chosen, marked)
    return out


def _reading(better: str, pair: PairedDifference) -> str:
    if pair.by_utterance.excludes_zero() and pair.by_video.excludes_zero():
        return f"{better} better"
    if pair.by_utterance.excludes_zero():
        return f"{better} better over utterances, not over videos"
    return "no difference shown"


def _ci(low: float, high: float, scale: float = 1.0, digits: int = 3) -> str:
    return f"[{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def pairwise_table(groups: Mapping[str, Rows]) -> str:
    """Every pair of models, the better mean MAE first: the MAE difference with 95 % paired bootstrap
    intervals over utterances and over videos, against the larger of the two seed spreads, and the
    Acc-2 has0 difference in points."""
    ranked = sorted(groups, key=lambda m: _mae(groups[m])[0])
    lines = ["| A | B | paired utterances (videos) | MAE A − B | 95 % CI, utterances | 95 % CI, videos | "
             "abs(A − B) / seed std | Acc-2 has0 A − B (points) [95 % CI, utterances] | reading |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for a, b in itertools.combinations(ranked, 2):
        mae = paired_difference(groups[a], groups[b], "mae")
        acc = paired_difference(groups[a], groups[b], "acc2_has0")    # of the error: accuracy is minus it
        spread = max(_mae(groups[a])[1], _mae(groups[b])[1])
        ratio = f"{abs(mae.difference) / spread:.1f}" if spread > 0 else "– (no seed spread)"
        lines.append(f"| {a} | {b} | {mae.n} ({mae.n_videos}) | {mae.difference:+.3f} | "
                     f"{_ci(mae.by_utterance.low, mae.by_utterance.high)} | "
                     f"{_ci(mae.by_video.low, mae.by_video.high)} | {ratio} | {-100 * acc.difference:+.1f} "
                     f"{_ci(-acc.by_utterance.high, -acc.by_utterance.low, 100, 1)} | {_reading(a, mae)} |")
    return ("\n".join(lines) + "\n\n_Paired over the utterances both models were scored on; a model's per-utterance "
            "error is the mean over its seeds' rows, so A − B is the difference of the seed-mean MAEs (on those "
            "utterances). Percentile bootstrap, "
            "10,000 draws, resampling utterances, and resampling whole videos (utterances of one video share a "
            "speaker and a topic); \"better\" only where the interval excludes 0. Seed std: sample std of MAE "
            "over seeds, the larger of the two models'._\n")


def modality_set_table(rows: Rows) -> str:
    """MAE and Acc-2 has0 of every model trained and evaluated on each modality set."""
    per_set = {s: set_groups(rows, s) for s in MODE_ORDER}
    lines = ["| Model | " + " | ".join(MODE_ORDER) + " |", "|---|" + "---:|" * len(MODE_ORDER)]
    for model in _models(rows):
        cells = []
        for s in MODE_ORDER:
            chosen = per_set[s].get(model)
            if chosen is None:
                cells.append("–")
                continue
            group, marked = chosen
            mean, std = _mae(group)
            cells.append(f"{mean:.3f} ± {std:.3f} / {_metric(group, 'acc2_has0')}{DAGGER if marked else ''}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return ("\n".join(lines) + f"\n\n_MAE (raw) / Acc-2 has0 (%), mean ± std over seeds; each cell a model "
            f"trained, selected on valid and evaluated with only that set's modalities ({ALL}: the complete-data "
            f"training and evaluation). {DAGGER}: the model reads this set alone, so its complete-data training is "
            "that set's training. –: not trained on the set._\n")


def _dominance_row(model: str, singles: Mapping[str, Rows], together: Rows) -> tuple[str, str]:
    """(the table line, the best single set) of one model trained on each single modality."""
    means = {s: _mae(singles[s])[0] for s in SINGLE}
    best = min(means, key=means.get)
    others = []
    for other in (s for s in SINGLE if s != best):
        pair = paired_difference(singles[other], singles[best], "mae")
        others.append(f"{other} {pair.difference:+.3f} {_ci(pair.by_video.low, pair.by_video.high)}")
    dominated = all(paired_difference(singles[o], singles[best], "mae").by_video.low > 0 for o in SINGLE if o != best)
    gain = paired_difference(together, singles[best], "mae")
    if gain.by_utterance.excludes_zero() and gain.by_video.excludes_zero():
        effect = "the other two help" if gain.difference < 0 else "the other two hurt"
    else:
        effect = "no effect of the other two shown"
    reading = f"{best} {'dominates' if dominated else 'is best, not shown better than both others'}; {effect}"
    maes = " / ".join(f"{means[s]:.3f}" for s in SINGLE) + f" / {_mae(together)[0]:.3f}"
    return (f"| {model} | {best} | {maes} | {'; '.join(others)} | {gain.difference:+.3f} "
            f"{_ci(gain.by_utterance.low, gain.by_utterance.high)}; {_ci(gain.by_video.low, gain.by_video.high)} | "
            f"{reading} |", best)


def dominance_table(rows: Rows) -> str:
    """Which single modality each model reads best, and what the other two add to it."""
    per_set = {s: set_groups(rows, s) for s in (*SINGLE, ALL)}
    lines = ["| Model | best single set | MAE: " + " / ".join(SINGLE) + f" / {ALL} | other single sets − best "
             f"[95 % CI, videos] | {ALL} − best single [95 % CI, utterances; videos] | reading |",
             "|---|---|---:|---|---:|---|"]
    best_sets = []
    for model in _models(rows):
        chosen = {s: per_set[s].get(model) for s in (*SINGLE, ALL)}
        if any(c is None or c[1] for c in chosen.values()):
            continue                      # not trained on every single modality
        line, best = _dominance_row(model, {s: chosen[s][0] for s in SINGLE}, chosen[ALL][0])
        lines.append(line)
        best_sets.append(best)
    if not best_sets:
        return ""
    counts = ", ".join(f"{s} for {best_sets.count(s)}" for s in SINGLE if best_sets.count(s))
    return ("\n".join(lines) + f"\n\nBest single modality (lowest mean MAE trained alone): {counts} of "
            f"{len(best_sets)} models. \"Dominates\": both other single sets are worse with the video-level "
            "interval above 0; the other two \"help\" or \"hurt\" only where both intervals exclude 0.\n")


def published_table(rows: Rows, spec: FeatureSetSpec) -> str:
    """The published figures for the feature set beside ours on the same modality sets."""
    if not spec.published:
        return ""
    columns = (*SINGLE, ALL)
    lines = ["| Source | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for result in spec.published:
        lines.append(f"| {result.source} | " + " | ".join(
            f"{result.values[c]:.1f}" if c in result.values else "–" for c in columns) + " |")
    per_set = {c: set_groups(rows, c) for c in columns}
    for model in _models(rows):
        cells = []
        for c in columns:
            chosen = per_set[c].get(model)
            cells.append("–" if chosen is None else f"{_metric(chosen[0], 'acc2_has0')} / "
                         f"{_metric(chosen[0], 'acc2_non0')}{DAGGER if chosen[1] else ''}")
        lines.append(f"| {model} (ours: has0 / non0) | " + " | ".join(cells) + " |")
    notes = " ".join(f"{r.source}: {r.note}" for r in spec.published if r.note)
    return ("\n".join(lines) + f"\n\n_Binary accuracy in %. Ours: mean ± std over seeds, each set trained alone "
            f"as in the per-set table; has0 is negative against non-negative, non0 leaves out zero labels. "
            f"{notes}_\n")


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def conformal_radius(residuals: Sequence[float], coverage: float) -> float:
    """Split-conformal half-width: the ceil((n + 1) * coverage)-th smallest calibration residual, so an
    exchangeable new sample's |error| is below it with probability >= coverage (inf when n is too small)."""
    ordered = np.sort(np.asarray(residuals, dtype=np.float64))
    rank = math.ceil((len(ordered) + 1) * coverage)
    return float(ordered[rank - 1]) if rank <= len(ordered) else math.inf


def _interval_figures(row: Mapping[str, Any], coverage: float) -> dict[str, float] | None:
    """Spearman(predicted std, |error|), the coverage and mean width of the row's intervals: the
    readout's own central interval, else a split-conformal one calibrated on the dev split."""
    from scipy.stats import spearmanr

    record = row.get("per_sample") or {}
    preds, labels = np.asarray(record.get("preds", []), dtype=np.float64), np.asarray(record.get("labels", []))
    extra, training = record.get("extra") or {}, row.get("training") or {}
    errors = np.abs(preds - labels)
    if {"low80", "high80", "std"} <= set(extra):
        low, high = np.asarray(extra["low80"]), np.asarray(extra["high80"])
        return {"spearman": float(spearmanr(extra["std"], errors).statistic), "kind": "its distribution",
                "coverage": float(np.mean((labels >= low) & (labels <= high))), "width": float(np.mean(high - low))}
    residuals = training.get("calibration_residuals")
    if residuals and training.get("selected_on") == "dev":
        radius = conformal_radius(residuals, coverage)
        return {"spearman": math.nan, "kind": f"split-conformal on dev (n = {len(residuals)})",
                "coverage": float(np.mean(errors <= radius)), "width": 2 * radius}
    return None


def uncertainty_table(rows: Rows, coverage: float = 0.8) -> str:
    """Per readout with intervals: how well the predicted spread ranks errors, and interval coverage."""
    lines = [f"| Model | intervals | Spearman(predicted std, abs error) | {100 * coverage:.0f} % interval coverage | "
             "mean width |", "|---|---|---:|---:|---:|"]
    for model in _models(rows):
        figures = [f for r in rows if r["model"] == model and (f := _interval_figures(r, coverage)) is not None]
        if not figures:
            continue
        spearman, cover = (np.array([f[k] for f in figures]) for k in ("spearman", "coverage"))
        rank = "–" if np.isnan(spearman).all() else f"{spearman.mean():.3f} ± {_std(spearman):.3f}"
        lines.append(f"| {model} | {figures[0]['kind']} | {rank} | {100 * cover.mean():.1f} ± "
                     f"{100 * _std(cover):.1f} | {np.mean([f['width'] for f in figures]):.3f} |")
    if len(lines) == 2:
        return ""
    return ("\n".join(lines) + f"\n\n_Mean ± std over seeds, on the rows' own samples. The distribution readouts' "
            f"interval is the 0.1-0.9 quantile range of their renormalised answer distribution; the others' is "
            f"the prediction ± the split-conformal radius from the dev split's residuals at the best step (their "
            f"coverage is guaranteed >= {100 * coverage:.0f} % only where dev and the rows' samples are "
            "exchangeable)._\n")
