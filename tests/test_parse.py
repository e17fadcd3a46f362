import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omni_msa.parse import ParsedScore, ParseStatus, StatusCounts, parse_score

OK, UNPARSABLE, OUT = ParseStatus.OK, ParseStatus.UNPARSABLE, ParseStatus.OUT_OF_RANGE


@pytest.mark.parametrize("text, value, status", [
    ("1.5", 1.5, OK),
    (" -2", -2.0, OK),
    ("+0.80", 0.8, OK),
    ("3.7", 3.0, OUT),
    ("-3.2", -3.0, OUT),
    ("\u22121.5", -1.5, OK),
    ("2.0\n", 2.0, OK),
    ("\t0.5  \n", 0.5, OK),
    (".5", 0.5, OK),
    ("-.5", -0.5, OK),
    ("2.", 2.0, OK),
    ("1.5.", 1.5, OK),
    ("3", 3.0, OK),
    ("-3.0", -3.0, OK),
    ("9" * 400, 3.0, OUT),
    ("-" + "9" * 400, -3.0, OUT),
])
def test_known_numbers(text, value, status):
    parsed = parse_score(text)
    assert parsed == ParsedScore(value, status, text)


@pytest.mark.parametrize("text", [
    "positive", "", "   ", "\n", "1.2.3", "1.5 because it is happy", "The sentiment is 1.5", "Score: 1.5",
    "1e0", "1E-1", "nan", "NaN", "inf", "-inf", "Infinity", "1,000", "1_000", "- 1.5", "--1", "+-1",
    "\u20131.5", "'1.5'", '"1.5"', "1.5..", "5..", ".", "-", "+", "-.", "0x1", "\u0661\u0662", "\uff11", "1 5",
])
def test_unparsable(text):
    assert parse_score(text) == ParsedScore(0.0, UNPARSABLE, text)


def test_negative_zero_reads_as_positive_zero():
    for text in ("-0", "-0.0", "\u22120.000"):
        parsed = parse_score(text)
        assert parsed.status is OK
        assert parsed.value == 0 and math.copysign(1, parsed.value) == 1


def test_sims_range():
    assert parse_score("0.4", -1, 1) == ParsedScore(0.4, OK, "0.4")
    assert parse_score("-1", -1, 1) == ParsedScore(-1.0, OK, "-1")
    assert parse_score("1.5", -1, 1) == ParsedScore(1.0, OUT, "1.5")
    assert parse_score("-2", -1, 1) == ParsedScore(-1.0, OUT, "-2")
    assert parse_score("meh", -1, 1, fallback=0.25) == ParsedScore(0.25, UNPARSABLE, "meh")


def test_fallback_is_configurable_and_checked():
    assert parse_score("no idea", fallback=0.7).value == 0.7
    with pytest.raises(ValueError, match="fallback"):
        parse_score("1", -1, 1, fallback=2.0)
    with pytest.raises(ValueError, match="range"):
        parse_score("1", 1, -1)


@pytest.mark.parametrize("bad", [None, 1.5, b"1.5", ["1.5"]])
def test_non_str_raises_type_error(bad):
    with pytest.raises(TypeError):
        parse_score(bad)


def test_status_is_a_plain_string_value():
    status = parse_score("1").status
    assert status == "ok" and str(status) == "ok"


def test_status_counts_include_zeros_and_shares():
    parsed = [parse_score(t) for t in ("1", "2", "x", "4")]
    counts = StatusCounts.of(parsed)
    assert counts.as_dict() == {
        "total": 4,
        "counts": {"ok": 2, "unparsable": 1, "out_of_range": 1},
        "shares": {"ok": 0.5, "unparsable": 0.25, "out_of_range": 0.25},
    }
    assert StatusCounts.of(["ok", "ok"]).counts == {"ok": 2, "unparsable": 0, "out_of_range": 0}
    empty = StatusCounts.of([]).as_dict()
    assert empty["total"] == 0 and set(empty["shares"].values()) == {0.0}
    with pytest.raises(ValueError):
        StatusCounts.of(["fine"])


# ----------------------------------------------------------------------------- properties

ranges = st.sampled_from([(-3.0, 3.0), (-1.0, 1.0)])


@given(st.text(), ranges, st.floats(-1, 1))
def test_never_raises_and_stays_in_range(text, bounds, fallback):
    low, high = bounds
    parsed = parse_score(text, low, high, fallback)
    assert parsed.status in set(ParseStatus)
    assert parsed.raw == text
    assert low <= parsed.value <= high or parsed.value == fallback
    if parsed.status is UNPARSABLE:
        assert parsed.value == fallback


@given(st.floats(-3, 3), st.integers(0, 4), st.sampled_from(["", " ", "\n"]))
def test_formatted_numbers_round_trip(x, decimals, padding):
    text = f"{x:.{decimals}f}" + padding
    parsed = parse_score(text)
    assert parsed.status is OK
    assert abs(parsed.value - x) <= 10 ** -decimals / 2 + 1e-12


@given(st.one_of(st.floats(max_value=-3, exclude_max=True, allow_infinity=False),
                 st.floats(min_value=3, exclude_min=True, allow_infinity=False)))
def test_out_of_range_is_clipped(x):
    parsed = parse_score(format(Decimal(x), "f"))  # the exact value, no exponent
    assert parsed.status is OUT
    assert parsed.value == (3.0 if x > 0 else -3.0)
