import logging
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from omni_msa.metrics import aggregate_over_seeds, format_metrics, regression_metrics

MOSI_KEYS = {"mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"}
SIMS_KEYS = {"mae", "corr", "acc2", "acc3", "acc5", "f1"}


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------- MOSI / MOSEI


def test_half_to_even_rounding_for_acc7(no_warnings):
    p = [2.5, -0.5, 1.5, -2.5, 0.5, 3.5]
    y = [2.0, 0.0, 2.0, -2.0, 1.0, 3.0]
    m = regression_metrics(p, y, "mosi")
    # np.round: 2.5->2, -0.5->-0 (== 0), 1.5->2, -2.5->-2 all match; 0.5->0 != 1 misses;
    # 3.5 is clipped to 3 first -> 3 == 3. 5 of 6 (half-away-from-zero would give 2/6).
    assert m["acc7"] == pytest.approx(5 / 6)
    # acc5 clips to [-2, 2]: p -> [2, -0.5, 1.5, -2, 0.5, 2] -> round [2, 0, 2, -2, 0, 2],
    # y -> [2, 0, 2, -2, 1, 2]: only 0.5 vs 1 misses -> 5/6.
    assert m["acc5"] == pytest.approx(5 / 6)
    assert set(m) == MOSI_KEYS
    assert all(type(v) is float for v in m.values())


def test_acc7_and_acc5_clip_but_mae_does_not(no_warnings):
    m = regression_metrics([4.0, -5.0, 2.6], [3.0, -3.0, 2.2], "mosei")
    # acc7: clip p -> [3, -3, 2.6] -> round [3, -3, 3]; y round [3, -3, 2] -> 2/3
    assert m["acc7"] == pytest.approx(2 / 3)
    # acc5: clip p -> [2, -2, 2]; clip y -> [2, -2, 2] -> 3/3
    assert m["acc5"] == 1.0

    m = regression_metrics([-5.0, 1.0, 4.0], [-3.0, 0.0, 3.0], "mosi")
    # mae unclipped: (|-5+3| + |1-0| + |4-3|) / 3 = (2 + 1 + 1) / 3 = 4/3 (clipped would be 1/3)
    assert m["mae"] == pytest.approx(4 / 3)


def test_unclipped_corr_differs_from_clipped(no_warnings):
    p = [-5.0, 1.0, 4.0, 0.0]
    y = [-2.0, 0.0, 2.0, 0.0]
    m = regression_metrics(p, y, "mosi")
    # means: p 0, y 0. sum(dp*dy) = 10 + 0 + 8 + 0 = 18; sum(dp^2) = 25 + 1 + 16 = 42;
    # sum(dy^2) = 4 + 4 = 8 -> r = 18 / sqrt(336) ~ 0.98198
    # clipped to [-3, 3]: p = [-3, 1, 3, 0], mean 1/4, sum(dp*dy) = 6 + 6 = 12,
    # sum(dp^2) = 19 - 4 * (1/16) = 18.75 -> 12 / sqrt(150) ~ 0.9798: different.
    assert m["corr"] == pytest.approx(18 / math.sqrt(336))
    assert m["corr"] != pytest.approx(12 / math.sqrt(150))
    # mae: (3 + 1 + 2 + 0) / 4 = 1.5 (clipped: (1 + 1 + 1 + 0) / 4 = 0.75)
    assert m["mae"] == pytest.approx(1.5)


def test_zero_labels_and_zero_predictions_has0_vs_non0(no_warnings):
    y = [0.0, 0.0, 0.0, 1.0, 2.0, -1.0, -2.0, 0.5, 3.0]
    p = [0.0, -0.2, 0.3, 0.0, 1.0, -1.0, 0.4, -0.3, 2.0]
    m = regression_metrics(p, y, "mosi")
    # has0: true y>=0 = [T T T T T F F T T] (7 T, 2 F); pred p>=0 = [T F T T T F T F T]
    # matches at 0,2,3,4,5,8 -> 6/9
    assert m["acc2_has0"] == pytest.approx(6 / 9)
    # class T: TP {0,2,3,4,8}=5, FP {6}=1, FN {1,7}=2 -> F1 = 2*5/(2*5+1+2) = 10/13
    # class F: TP {5}=1, FP {1,7}=2, FN {6}=1 -> F1 = 2/(2+2+1) = 2/5
    # weighted by true support: (7 * 10/13 + 2 * 2/5) / 9 = (70/13 + 4/5) / 9 = 402/585 ~ 0.68718
    # (arguments swapped would weight by predicted support 6/3 -> 378/585)
    assert m["f1_has0"] == pytest.approx(402 / 585)
    # non0: indices 3..8, y = [1 2 -1 -2 .5 3] -> y>0 = [T T F F T T] (4 T, 2 F);
    # p = [0 1 -1 .4 -.3 2] -> p>0 = [F T F T F T] (p = 0.0 is negative here, positive in has0)
    # matches at 4,5,8 -> 3/6
    assert m["acc2_non0"] == pytest.approx(0.5)
    # class T: TP {4,8}=2, FP {6}=1, FN {3,7}=2 -> 4/7
    # class F: TP {5}=1, FP {3,7}=2, FN {6}=1 -> 2/5
    # weighted: (4 * 4/7 + 2 * 2/5) / 6 = (16/7 + 4/5) / 6 = 108/210 = 18/35 ~ 0.51429
    assert m["f1_non0"] == pytest.approx(18 / 35)
    # acc7: round p = [0 -0 0 0 1 -1 0 -0 2], round y = [0 0 0 1 2 -1 -2 0 3]
    # (0.5 -> 0): matches at 0,1,2,5,7 -> 5/9
    assert m["acc7"] == pytest.approx(5 / 9)


def test_all_zero_labels_give_nan_non0_with_logged_warning(no_warnings, caplog):
    with caplog.at_level(logging.WARNING, logger="omni_msa.metrics"):
        m = regression_metrics([1.0, -1.0, 0.5], [0.0, 0.0, 0.0], "mosi")
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    assert "every label is 0" in caplog.text
    # labels constant too -> corr nan, said so
    assert math.isnan(m["corr"])
    assert "labels are constant" in caplog.text
    # y>=0 all T; p>=0 = [T F T] -> 2/3; mae = (1 + 1 + 0.5) / 3 = 2.5/3
    assert m["acc2_has0"] == pytest.approx(2 / 3)
    assert m["mae"] == pytest.approx(2.5 / 3)


@pytest.mark.parametrize("const", [0.5, 0.1, -3.0])
def test_constant_predictions_corr_nan_logged_no_runtime_warning(no_warnings, caplog, const):
    y = [1.0, 2.0, 3.0, -1.0]
    with caplog.at_level(logging.WARNING, logger="omni_msa.metrics"):
        m = regression_metrics([const] * 4, y, "mosi")
    assert math.isnan(m["corr"])
    assert "corr undefined: predictions are constant" in caplog.text
    # the rest is still computed: mae = mean |const - y|
    assert m["mae"] == pytest.approx(sum(abs(const - v) for v in y) / 4)


@pytest.mark.parametrize("const, n", [(0.1, 3), (0.7, 7)])
def test_constant_with_rounding_noise_in_mean_is_still_constant(no_warnings, caplog, const, n):
    # mean([0.1] * 3) = 0.30000000000000004 / 3 != 0.1, so np.std is ~1e-17, not 0:
    # a std-based check would return a meaningless r instead of nan.
    y = np.linspace(-1.0, 1.0, n)
    with caplog.at_level(logging.WARNING, logger="omni_msa.metrics"):
        m = regression_metrics([const] * n, y, "sims")
        m_rev = regression_metrics(y, [const] * n, "mosi")
    assert math.isnan(m["corr"]) and math.isnan(m_rev["corr"])
    assert "predictions are constant" in caplog.text and "labels are constant" in caplog.text


def test_constant_prediction_f1_with_missing_predicted_class(no_warnings, caplog):
    with caplog.at_level(logging.WARNING, logger="omni_msa.metrics"):
        m = regression_metrics([0.5] * 4, [1.0, 2.0, 3.0, -1.0], "mosi")
    # p>=0 all T; y>=0 = [T T T F] -> acc 3/4
    # class T (support 3): TP 3, FP 1, FN 0 -> 6/7; class F (support 1): never predicted -> 0
    # weighted: (3 * 6/7 + 1 * 0) / 4 = 18/28 = 9/14
    assert m["acc2_has0"] == pytest.approx(0.75)
    assert m["f1_has0"] == pytest.approx(9 / 14)


def test_pearson_matches_corrcoef_on_random_data(no_warnings):
    rng = np.random.default_rng(0)
    y = rng.uniform(-3, 3, size=500)
    p = 0.6 * y + rng.normal(0, 1.0, size=500)
    m = regression_metrics(p, y, "mosei")
    assert m["corr"] == pytest.approx(np.corrcoef(p, y)[0, 1], rel=1e-12)
    assert m["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-12)


def test_inputs_are_flattened(no_warnings):
    m = regression_metrics(np.array([[1.0], [-1.0], [2.0]]), [1.0, 1.0, 2.0], "mosi")
    # mae = (0 + 2 + 0) / 3
    assert m["mae"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "preds, labels, dataset, match",
    [
        ([], [], "mosi", "empty"),
        ([1.0, 2.0], [1.0], "mosi", "length mismatch"),
        ([1.0, float("nan")], [1.0, 2.0], "mosi", "non-finite predictions"),
        ([1.0, float("inf")], [1.0, 2.0], "sims", "non-finite predictions"),
        ([1.0, 2.0], [float("nan"), 2.0], "mosei", "non-finite labels"),
        ([1.0, 2.0], [1.0, 2.0], "iemocap", "unknown dataset"),
    ],
)
def test_bad_inputs_raise_value_error(preds, labels, dataset, match):
    with pytest.raises(ValueError, match=match):
        regression_metrics(preds, labels, dataset)


# ----------------------------------------------------------------------------- SIMS


def test_sims_boundaries_fall_in_the_spec_bins(no_warnings):
    # predictions on every edge, labels strictly inside the bin the spec puts that edge in
    p = [-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0]
    y = [-0.9, -0.8, -0.4, -0.05, 0.05, 0.4, 0.8]
    m = regression_metrics(p, y, "sims")
    # acc5: -0.7 in [-1,-0.7], -0.1 in (-0.7,-0.1], 0.1 in (-0.1,0.1], 0.7 in (0.1,0.7] -> all match
    # acc3: -0.1 in [-1,-0.1], 0.1 in (-0.1,0.1]; acc2: 0 in [-1,0] -> all match
    assert m["acc5"] == 1.0
    assert m["acc3"] == 1.0
    assert m["acc2"] == 1.0
    assert m["f1"] == 1.0
    # mae: (0.1 + 0.1 + 0.3 + 0.05 + 0.05 + 0.3 + 0.2) / 7 = 1.1 / 7
    assert m["mae"] == pytest.approx(1.1 / 7)
    assert set(m) == SIMS_KEYS


def test_sims_boundaries_do_not_fall_in_the_next_bin(no_warnings):
    # predictions on every inner edge, labels just on the other (right-hand) side of it
    p = [-0.7, -0.1, 0.0, 0.1, 0.7]
    y = [-0.6, 0.0, 0.05, 0.2, 0.8]
    m = regression_metrics(p, y, "sims")
    # acc5 bins: p -> [0, 1, 2, 2, 3]; y -> [1, 2, 2, 3, 4]: only 0.0 vs 0.05 match -> 1/5
    assert m["acc5"] == pytest.approx(1 / 5)
    # acc3 bins: p -> [0, 0, 1, 1, 2]; y -> [0, 1, 1, 2, 2]: matches at 0, 2, 4 -> 3/5
    assert m["acc3"] == pytest.approx(3 / 5)
    # acc2 bins: p -> [0, 0, 0, 1, 1]; y -> [0, 0, 1, 1, 1]: miss only 0.0 vs 0.05 -> 4/5
    assert m["acc2"] == pytest.approx(4 / 5)
    # f1 on acc2 bins, true [0 0 1 1 1] (2 / 3), pred [0 0 0 1 1]:
    # class 0: TP 2, FP 1, FN 0 -> 4/5; class 1: TP 2, FP 0, FN 1 -> 4/5; weighted 4/5
    assert m["f1"] == pytest.approx(4 / 5)


def test_sims_clips_before_mae_corr_and_bins(no_warnings):
    p = [1.5, -2.0, 0.5, 0.9]
    y = [1.0, -1.0, 0.0, 1.3]
    m = regression_metrics(p, y, "sims")
    # clipped: p = [1, -1, 0.5, 0.9], y = [1, -1, 0, 1]
    # mae = (0 + 0 + 0.5 + 0.1) / 4 = 0.15 (unclipped would be 2.4 / 4 = 0.6)
    assert m["mae"] == pytest.approx(0.15)
    # corr: mean p = 0.35, dp = [.65, -1.35, .15, .55]; mean y = .25, dy = [.75, -1.25, -.25, .75]
    # sum(dp*dy) = .4875 + 1.6875 - .0375 + .4125 = 2.55
    # sum(dp^2) = .4225 + 1.8225 + .0225 + .3025 = 2.57; sum(dy^2) = .5625*2 + 1.5625 + .0625 = 2.75
    assert m["corr"] == pytest.approx(2.55 / math.sqrt(2.57 * 2.75))
    # acc2: p -> [1, 0, 1, 1], y -> [1, 0, 0, 1] -> 3/4
    assert m["acc2"] == pytest.approx(0.75)
    # f1: class 1 (support 2): TP 2, FP 1, FN 0 -> 4/5; class 0 (support 2): TP 1, FP 0, FN 1 -> 2/3
    # weighted: (2 * 4/5 + 2 * 2/3) / 4 = 11/15
    assert m["f1"] == pytest.approx(11 / 15)
    # acc5: p -> [4, 0, 3, 4], y -> [4, 0, 2, 4] -> 3/4
    assert m["acc5"] == pytest.approx(0.75)


def test_sims_unbalanced_weighted_f1(no_warnings):
    y = [0.2, 0.4, 0.6, 0.8, 1.0, -0.2]
    p = [0.3, -0.1, 0.5, 0.0, 0.9, 0.1]
    m = regression_metrics(p, y, "sims")
    # acc2 classes: true [1 1 1 1 1 0] (5 / 1); pred [1 0 1 0 1 1] -> matches 0, 2, 4 -> 3/6
    assert m["acc2"] == pytest.approx(0.5)
    # class 1: TP 3, FP 1, FN 2 -> 6/9 = 2/3; class 0: TP 0 -> 0
    # weighted: (5 * 2/3 + 1 * 0) / 6 = 10/18 = 5/9 (macro would be 1/3)
    assert m["f1"] == pytest.approx(5 / 9)


# ----------------------------------------------------------------------------- aggregation


def test_aggregate_mean_and_sample_std():
    runs = [{"mae": 1.0, "acc2": 0.8}, {"mae": 2.0, "acc2": 0.8}, {"mae": 4.0, "acc2": 0.5}]
    agg = aggregate_over_seeds(runs)
    # mae: mean 7/3; deviations -4/3, -1/3, 5/3 -> squares (16 + 1 + 25)/9 = 42/9; /(3-1) = 7/3
    assert agg["mae"][0] == pytest.approx(7 / 3)
    assert agg["mae"][1] == pytest.approx(math.sqrt(7 / 3))
    # acc2: mean 2.1/3 = 0.7; deviations .1, .1, -.2 -> .01 + .01 + .04 = .06; /2 = .03
    assert agg["acc2"][0] == pytest.approx(0.7)
    assert agg["acc2"][1] == pytest.approx(math.sqrt(0.03))
    assert list(agg) == ["mae", "acc2"]


def test_aggregate_single_run_has_zero_std():
    assert aggregate_over_seeds([{"mae": 0.75}]) == {"mae": (0.75, 0.0)}


def test_aggregate_nan_in_any_seed_gives_nan(no_warnings):
    agg = aggregate_over_seeds([{"corr": 0.5, "mae": 1.0}, {"corr": float("nan"), "mae": 2.0}])
    assert math.isnan(agg["corr"][0]) and math.isnan(agg["corr"][1])
    # mae unaffected: mean 1.5, std sqrt((.25 + .25) / 1)
    assert agg["mae"] == pytest.approx((1.5, math.sqrt(0.5)))


def test_aggregate_rejects_missing_keys_and_empty():
    with pytest.raises(ValueError, match="'corr'"):
        aggregate_over_seeds([{"mae": 1.0, "corr": 0.5}, {"mae": 2.0}])
    with pytest.raises(ValueError, match="'acc7'"):
        aggregate_over_seeds([{"mae": 1.0}, {"mae": 2.0, "acc7": 0.3}])
    with pytest.raises(ValueError, match="no runs"):
        aggregate_over_seeds([])


# ----------------------------------------------------------------------------- formatting


def test_format_metrics_percentages_and_raw():
    m = {"mae": 0.786049, "corr": 0.70512, "acc2": 0.843219, "acc3": 0.5, "acc5": 0.123456,
         "f1": 0.84}
    line = format_metrics(m, "sims")
    assert "\n" not in line
    assert "Acc/F1 in %" in line and "MAE/Corr raw" in line
    assert "MAE 0.7860" in line and "Corr 0.7051" in line
    assert "Acc-2 84.32" in line and "Acc-5 12.35" in line and "F1 84.00" in line


def test_format_metrics_mean_std():
    agg = {"mae": (0.9, 0.05), "corr": (0.7, 0.01), "acc7": (0.4, 0.02), "acc5": (0.45, 0.0),
           "acc2_has0": (0.8, 0.015), "f1_has0": (0.8, 0.01), "acc2_non0": (0.82, 0.01),
           "f1_non0": (0.82, 0.01)}
    line = format_metrics(agg, "mosi")
    assert "MAE 0.9000 +- 0.0500" in line
    assert "Acc-2 has0 80.00 +- 1.50" in line
    with pytest.raises(ValueError, match="f1_non0"):
        format_metrics({k: v for k, v in agg.items() if k != "f1_non0"}, "mosi")


# ----------------------------------------------------------------------------- light layer


def test_metrics_module_does_not_import_torch_or_transformers():
    code = ("import sys, omni_msa.metrics; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
