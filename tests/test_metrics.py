"""divisions.metrics: exact thresholds, TTA, AAT, TTMT, ATTMT and summarize().

Every expected value is worked out by hand in the test (no recomputation with
the code under test).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttabench import UserError
from ttabench.divisions import metrics as m

# --- thresholds --------------------------------------------------------------------


def test_thresholds_070_077_001_exact():
    ts = m.thresholds(0.70, 0.77, 0.01)
    assert ts == [0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77]
    assert len(ts) == 8
    # No drift: each is the double nearest the decimal, so repr is the short decimal.
    assert [repr(t) for t in ts] == ["0.7", "0.71", "0.72", "0.73", "0.74", "0.75", "0.76", "0.77"]


def test_thresholds_020_035_005_four_values():
    # (0.35 - 0.2) / 0.05 is 2.9999999999999996 in floating point: still 4 thresholds.
    assert m.thresholds(0.2, 0.35, 0.05) == [0.2, 0.25, 0.3, 0.35]


def test_thresholds_01_03_01():
    # 0.1 + 2 * 0.1 is 0.30000000000000004 in floating point; the last must be 0.3.
    assert m.thresholds(0.1, 0.3, 0.1) == [0.1, 0.2, 0.3]


def test_thresholds_default_spec_of_run():
    # The `run` default 0.80:0.92:0.01 -> 13 thresholds.
    ts = m.thresholds(*m.parse_thresholds("0.80:0.92:0.01"))
    assert ts == [0.8, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91, 0.92]


def test_thresholds_single_when_low_equals_high():
    assert m.thresholds(0.8, 0.8, 0.01) == [0.8]
    assert m.parse_thresholds("0.8:0.8:0.01") == (0.8, 0.8, 0.01)


def test_thresholds_whole_range():
    assert m.thresholds(0.0, 1.0, 0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    "low,high,step",
    [
        (0.8, 0.7, 0.01),  # reversed
        (-0.1, 0.5, 0.1),  # below 0
        (0.5, 1.1, 0.1),  # above 1
        (0.5, 0.6, 0.0),  # step 0
        (0.5, 0.6, -0.01),  # negative step
        (0.70, 0.77, 0.02),  # 3.5 steps
        (0.1, 0.35, 0.1),  # 2.5 steps
    ],
)
def test_thresholds_bad_values_raise_user_error(low, high, step):
    with pytest.raises(UserError):
        m.thresholds(low, high, step)


@pytest.mark.parametrize(
    "spec",
    [
        "0.8:0.7:0.01",  # reversed
        "0.5:1.5:0.1",  # outside 0..1
        "-0.5:0.5:0.1",
        "0.5:0.6:0",  # step 0
        "0.5:0.6:-0.1",  # step < 0
        "0.70:0.77:0.02",  # not a whole number of steps
        "a:b:c",  # non-numeric
        "0.7:0.8:x",
        "0.7:0.8",  # too few parts
        "0.7:0.8:0.01:0.1",  # too many parts
        "",
        "0.7::0.01",
        "nan:0.8:0.1",
        "0.5:0.5:nan",
    ],
)
def test_parse_thresholds_bad_specs_raise_user_error(spec):
    with pytest.raises(UserError):
        m.parse_thresholds(spec)


@pytest.mark.parametrize("spec", ["0.5:0.5:inf", "0.5:0.5:1e999", "0.5:0.6:1e-320"])
def test_parse_thresholds_nonfinite_step_is_user_error(spec):
    with pytest.raises(UserError):
        m.parse_thresholds(spec)


def test_parse_thresholds_values():
    assert m.parse_thresholds("0.70:0.77:0.01") == (0.7, 0.77, 0.01)
    assert m.parse_thresholds("0.2:0.35:0.05") == (0.2, 0.35, 0.05)


def test_user_error_message_is_one_line():
    with pytest.raises(UserError) as e:
        m.parse_thresholds("0.70:0.77:0.02")
    assert "\n" not in str(e.value)
    assert "0.02" in str(e.value)


@st.composite
def _decimal_grid(draw):
    """(low, high, step, count, exact values) on a decimal grid of 1..4 digits within 0..1."""
    digits = draw(st.integers(1, 4))
    scale = 10**digits
    step_i = draw(st.integers(1, scale))
    steps = draw(st.integers(0, scale // step_i))
    low_i = draw(st.integers(0, scale - steps * step_i))
    q = Decimal(1).scaleb(-digits)
    exact = [float((low_i + k * step_i) * q) for k in range(steps + 1)]
    return float(low_i * q), float((low_i + steps * step_i) * q), float(step_i * q), steps + 1, exact


@settings(max_examples=400, deadline=None)
@given(_decimal_grid())
def test_thresholds_property_on_decimal_grid(grid):
    low, high, step, count, exact = grid
    ts = m.thresholds(low, high, step)
    assert len(ts) == count == round((high - low) / step) + 1
    assert ts[0] == low
    assert ts[-1] == high
    assert all(a < b for a, b in zip(ts, ts[1:]))
    assert ts == exact  # each is exactly the decimal it stands for


# --- TTA ---------------------------------------------------------------------------

CURVE = [(10.0, 0.50), (20.0, 0.70), (30.0, 0.71), (40.0, 0.69), (50.0, 0.77)]


def test_tta_first_evaluation_at_or_above():
    assert m.tta(CURVE, 0.6) == 20.0
    assert m.tta(CURVE, 0.5) == 10.0
    assert m.tta(CURVE, 0.705) == 30.0
    assert m.tta(CURVE, 0.72) == 50.0


def test_tta_accuracy_equal_to_threshold_counts():
    ts = m.thresholds(0.70, 0.77, 0.01)
    # accuracies 0.70, 0.71 and 0.77 equal the generated thresholds exactly
    assert m.tta(CURVE, ts[0]) == 20.0
    assert m.tta(CURVE, ts[1]) == 30.0
    assert m.tta(CURVE, ts[-1]) == 50.0
    # 0.3 reached by an accuracy of exactly 0.3 (0.1 + 0.2 would be 0.30000000000000004)
    assert m.tta([(1.5, 0.3)], m.thresholds(0.1, 0.3, 0.1)[-1]) == 1.5


def test_tta_not_reached_is_none():
    assert m.tta(CURVE, 0.78) is None
    assert m.tta([], 0.1) is None


# --- AAT ---------------------------------------------------------------------------


def test_aat_last_evaluation_at_or_before_budget():
    assert m.aat(CURVE, 35.0) == 0.71
    assert m.aat(CURVE, 45.0) == 0.69  # the last one, not the best one
    assert m.aat(CURVE, 1000.0) == 0.77


def test_aat_budget_equal_to_eval_time_counts():
    assert m.aat(CURVE, 40.0) == 0.69
    assert m.aat(CURVE, 10.0) == 0.50


def test_aat_budget_before_first_eval_is_none():
    assert m.aat(CURVE, 9.999) is None
    assert m.aat([], 5.0) is None


# --- TTMT / ATTMT ------------------------------------------------------------------


def test_ttmt_points():
    ts = m.thresholds(0.70, 0.77, 0.01)
    # 0.70 -> 20, 0.71 -> 30, 0.72..0.77 -> 50
    assert m.ttmt(CURVE, ts) == [
        (20.0, 0.7),
        (30.0, 0.71),
        (50.0, 0.72),
        (50.0, 0.73),
        (50.0, 0.74),
        (50.0, 0.75),
        (50.0, 0.76),
        (50.0, 0.77),
    ]


def test_ttmt_skips_unreached():
    ts = m.thresholds(0.70, 0.80, 0.05)  # 0.70, 0.75, 0.80
    assert m.ttmt(CURVE, ts) == [(20.0, 0.7), (50.0, 0.75)]


def test_attmt_hand_computed_mean():
    # (20 + 30 + 6 * 50) / 8 = 350 / 8 = 43.75
    assert m.attmt(CURVE, 0.70, 0.77, 0.01) == 43.75
    # 0.5 -> 10, 0.6 -> 20, 0.7 -> 20: 50 / 3
    assert m.attmt(CURVE, 0.5, 0.7, 0.1) == pytest.approx(50.0 / 3, rel=0, abs=1e-12)


def test_attmt_none_when_any_threshold_unreached():
    assert m.attmt(CURVE, 0.70, 0.78, 0.01) is None
    assert m.attmt([], 0.1, 0.2, 0.1) is None


# --- summarize ---------------------------------------------------------------------


def test_summarize_keys_and_values_spec_only():
    out = m.summarize(CURVE, (0.70, 0.80, 0.05))
    assert set(out) == {"thresholds", "tta_s", "ttmt", "attmt_s"}
    assert out["thresholds"] == [0.7, 0.75, 0.8]
    assert out["tta_s"] == [20.0, 50.0, None]
    assert out["ttmt"] == [[20.0, 0.7], [50.0, 0.75]]
    assert out["attmt_s"] is None


def test_summarize_with_budget_and_target():
    out = m.summarize(CURVE, (0.70, 0.71, 0.01), target=0.71, budget_s=45.0)
    assert set(out) == {"thresholds", "tta_s", "ttmt", "attmt_s", "aat", "target_tta_s"}
    assert out["thresholds"] == [0.7, 0.71]
    assert out["tta_s"] == [20.0, 30.0]
    assert out["ttmt"] == [[20.0, 0.7], [30.0, 0.71]]
    assert out["attmt_s"] == 25.0
    assert out["aat"] == 0.69
    assert out["target_tta_s"] == 30.0


def test_summarize_optional_keys_present_only_when_asked():
    assert set(m.summarize(CURVE, (0.7, 0.7, 0.01), budget_s=5.0)) == {
        "thresholds",
        "tta_s",
        "ttmt",
        "attmt_s",
        "aat",
    }
    out = m.summarize(CURVE, (0.7, 0.7, 0.01), target=0.9)
    assert set(out) == {"thresholds", "tta_s", "ttmt", "attmt_s", "target_tta_s"}
    assert out["target_tta_s"] is None
    assert m.summarize(CURVE) == {}
    # a budget before the first evaluation: the key is there, the value is None
    assert m.summarize(CURVE, budget_s=5.0) == {"aat": None}
