"""Paired bootstrap comparisons and the summary sections built on them."""

from __future__ import annotations

import numpy as np
import pytest

from omni_msa.compare.findings import conformal_radius, pairwise_table, published_table, set_groups, uncertainty_table
from omni_msa.compare.paired import bootstrap_interval, paired_difference, per_sample_loss, video_of
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.feature_sets import get_feature_set

IDS = [f"video{v}$_${c}" for v in range(8) for c in range(6)]


def row(model: str, seed: int, preds, labels, *, ids=IDS, train: dict | None = None, keep=None,
        inputs=("text", "audio", "vision")) -> dict:
    from omni_msa.report import result_row

    evaluation = MissingnessProtocol(keep=None if keep is None else frozenset(keep), seed=seed)
    training = MissingnessProtocol.from_dict({"seed": seed, **(train or {})})
    return result_row(model=model, family="test", dataset="mosi", seed=seed, split="valid", train_protocol=training,
                      evaluation=evaluation, ids=ids, preds=preds, labels=labels, inputs=list(inputs))


def test_the_group_bootstrap_equals_resampling_whole_groups_by_hand():
    rng = np.random.default_rng(5)
    values, groups = rng.normal(size=48), np.array([video_of(i) for i in IDS])
    draws = 300
    picks = np.random.default_rng(0).integers(0, 8, size=(draws, 8))
    names = np.unique(groups)
    by_hand = [np.concatenate([values[groups == names[g]] for g in pick]).mean() for pick in picks]
    low, high = np.percentile(by_hand, [2.5, 97.5])
    interval = bootstrap_interval(values, groups, draws=draws)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    singletons = bootstrap_interval(values, np.arange(48), draws=draws)
    assert singletons == bootstrap_interval(values, None, draws=draws), "one utterance per group: the plain bootstrap"


def test_a_constant_gap_has_a_zero_width_interval_and_noise_does_not_separate():
    labels = np.linspace(-3, 3, len(IDS))
    b = [row("b", s, labels + 0.5, labels) for s in (0, 1)]
    a = [row("a", s, labels + 0.4, labels) for s in (0, 1)]
    gap = paired_difference(a, b, "mae")
    assert gap.difference == pytest.approx(-0.1) and gap.by_video.high == pytest.approx(-0.1, abs=1e-9)
    assert gap.n == 48 and gap.n_videos == 8
    rng = np.random.default_rng(1)
    noisy = [row("c", s, labels + rng.normal(0, 0.5, len(IDS)), labels) for s in (0, 1)]
    twin = [row("d", s, labels + rng.normal(0, 0.5, len(IDS)), labels) for s in (0, 1)]
    pair = paired_difference(noisy, twin, "mae")
    assert pair.by_utterance.low < pair.difference < pair.by_utterance.high
    assert not pair.by_video.excludes_zero()


def test_per_sample_loss_averages_the_seeds_over_the_samples_each_scored():
    labels = np.zeros(len(IDS))
    rows = [row("a", 0, labels + 1.0, labels), row("a", 1, labels - 3.0, labels)]
    assert set(per_sample_loss(rows, "mae").values()) == {2.0}
    assert set(per_sample_loss(rows, "acc2_has0").values()) == {0.5}, "one seed right (>= 0), one wrong"
    fewer = row("a", 2, labels[1:] + 2.0, labels[1:], ids=IDS[1:])
    assert per_sample_loss([*rows, fewer], "mae") == dict.fromkeys(IDS[1:], 2.0), "the ids every seed scored"
    with pytest.raises(ValueError, match="no per-sample predictions"):
        per_sample_loss([{**rows[0], "per_sample": None}], "mae")


def test_set_groups_and_the_pairwise_reading():
    labels = np.linspace(-3, 3, len(IDS))
    rows = []
    for s in (0, 1):
        rows.append(row("classic", s, labels + 0.8, labels))                                  # complete data
        rows.append(row("classic", s, labels + 0.6, labels, train={"keep": ["text"]}, keep=["text"]))
        rows.append(row("llm", s, labels + 0.3 + 0.01 * s, labels, inputs=["text"]))
        rows.append(row("llm", s, labels + 0.3 + 0.01 * s, labels, keep=["text"], inputs=["text"]))
        rows.append(row("not_yet_alone", s, labels, labels))                   # trimodal, no set rows yet
        rows.append(row("not_yet_alone", s, labels, labels, keep=["text"]))
    groups = set_groups(rows, "text")
    assert [r["train_protocol"]["keep"] for r in groups["classic"][0]] == [["text"], ["text"]]
    assert not groups["classic"][1] and groups["llm"][1], "the text-only model is marked: its input is that set"
    table = pairwise_table({m: g for m, (g, _) in groups.items()})
    assert "| llm | classic | 48 (8) | -0.295 |" in table and "llm better |" in table
    assert "not_yet_alone" not in groups, "a trimodal model evaluated on text is not a model trained on text"
    assert set_groups(rows, "audio") == {}, "nobody read audio alone"
    published = published_table(rows, get_feature_set("mosi_utterance"))
    assert "| Poria et al. 2017, SVM per utterance | 75.5 | 58.5 | 53.1 | 77.9 |" in published
    # +0.3 moves the two labels in (-0.3, 0) to the other side of 0: 46 of 48 right
    assert "| llm (ours: has0 / non0) | 95.8 ± 0.0 / 95.8 ± 0.0† | – | – | 95.8 ± 0.0 / 95.8 ± 0.0 |" in published


def test_split_conformal_intervals_cover_exchangeable_samples():
    assert conformal_radius([0.5, 0.1, 0.3, 0.2], 0.6) == 0.3, "the ceil(5 x 0.6) = 3rd smallest"
    assert conformal_radius([0.1, 0.2], 0.9) == float("inf"), "too few calibration samples for 90 %"
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(2000):
        errors = np.abs(rng.standard_t(3, size=31))
        covered.append(errors[30] <= conformal_radius(errors[:30], 0.8))
    assert 0.8 <= np.mean(covered) <= 0.86, "marginal coverage >= 0.8, and not much more"


def test_the_uncertainty_table_reads_distributions_and_dev_residuals():
    labels = np.linspace(-3, 3, len(IDS))
    spread = np.linspace(0.1, 2.0, len(IDS))
    preds = labels + spread * np.where(np.arange(len(IDS)) % 2, 1, -1) * 0.5     # error grows with spread
    expected = row("expected", 0, preds, labels)
    expected["per_sample"]["extra"] = {"std": spread.tolist(), "low80": (preds - spread).tolist(),
                                       "high80": (preds + spread).tolist()}
    head = row("head", 0, labels + 0.1, labels)
    head["training"] = {"selected_on": "dev", "calibration_residuals": [0.05] * 20 + [0.2] * 5}
    on_valid = row("picked_on_valid", 0, labels, labels)
    on_valid["training"] = {"selected_on": "valid", "calibration_residuals": [0.1] * 25}
    table = uncertainty_table([expected, head, on_valid])
    assert "| expected | its distribution | 1.000 ± 0.000 | 100.0 ± 0.0 |" in table
    assert "| head | split-conformal on dev (n = 25) | – | 100.0 ± 0.0 | 0.400 |" in table, "the 21st of 25: 0.2"
    assert "picked_on_valid" not in table, "residuals of the reported split calibrate nothing"
