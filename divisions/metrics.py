"""Time-to-accuracy metrics as pure functions over an accuracy curve.

A curve is a sequence of evaluations in time order, each a ``(time_s, accuracy)``
pair: the training time at which the evaluation happened and the accuracy
(a fraction) it measured.

- TTA(T): the time of the first evaluation whose accuracy is >= T; None if
  no evaluation reached T (never the budget or infinity).
- AAT(B): the accuracy of the last evaluation at or before time B; None if
  there was none.
- TTMT: the points (TTA(T_i), T_i) for the thresholds T_low..T_high with step s.
- ATTMT(low, high, s): the arithmetic mean of TTA(T_i) over those thresholds,
  defined only when every one of them was reached.

Thresholds are generated exactly: count = round((high - low) / step) + 1, and
each is rounded to the step's decimals, so 0.70:0.77:0.01 is exactly
[0.70, 0.71, ..., 0.77], never 0.7000000000000001 or a missing 0.77.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

from ttabench import UserError

Curve = Sequence[tuple[float, float]]
MAX_THRESHOLDS = 10_000


def _decimals(x: float) -> int:
    exp = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -int(exp))


def thresholds(low: float, high: float, step: float) -> list[float]:
    """The thresholds low, low+step, ..., high, exactly."""
    if not 0 <= low <= high <= 1:
        raise UserError(f"thresholds must satisfy 0 <= low <= high <= 1, got {low}:{high}")
    if not (math.isfinite(step) and step > 0):
        raise UserError(f"threshold step must be a finite number > 0, got {step}")
    steps = (high - low) / step
    if not math.isfinite(steps) or steps > MAX_THRESHOLDS:
        raise UserError(f"threshold range {low}:{high}:{step} has more than {MAX_THRESHOLDS} thresholds")
    count = round(steps) + 1
    if abs(low + (count - 1) * step - high) > step * 1e-6:
        raise UserError(f"threshold range {low}:{high} is not a whole number of steps of {step}")
    digits = max(_decimals(step), _decimals(low))
    out = [round(low + i * step, digits) for i in range(count)]
    out[-1] = round(high, digits)
    return out


def parse_thresholds(spec: str, flag: str = "--thresholds") -> tuple[float, float, float]:
    """'LOW:HIGH:STEP' (fractions) -> (low, high, step), checked; errors name `flag`."""
    if not isinstance(spec, str):
        raise UserError(f"{flag} must be LOW:HIGH:STEP (e.g. 0.70:0.77:0.01), got {spec!r}")
    parts = spec.split(":")
    if len(parts) != 3:
        raise UserError(f"{flag} must be LOW:HIGH:STEP (e.g. 0.70:0.77:0.01), got {spec!r}")
    try:
        low, high, step = (float(Decimal(p)) for p in parts)
    except (InvalidOperation, ValueError):
        raise UserError(f"{flag} must be numbers LOW:HIGH:STEP, got {spec!r}") from None
    if 0 <= high < low <= 1:
        raise UserError(f"{flag} {spec}: LOW is above HIGH (did you mean {parts[1]}:{parts[0]}:{parts[2]}?)")
    try:
        thresholds(low, high, step)  # validates
    except UserError as e:
        raise UserError(f"{flag} {spec}: {e}") from None
    return low, high, step


def valid_target(value) -> bool:
    """A target accuracy is a fraction in (0, 1]."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def check_target(value: float | None, flag: str = "--target") -> float | None:
    """`value` if it is None or a valid target, else a UserError naming `flag`."""
    if value is not None and not valid_target(value):
        raise UserError(f"{flag} is a fraction in (0, 1], got {value}")
    return value


def tta(curve: Curve, threshold: float) -> float | None:
    for time_s, acc in curve:
        if acc >= threshold:
            return time_s
    return None


def tta_epochs(rows: Iterable[dict], threshold: float) -> float | None:
    """TTA in epochs: the epoch of the first evaluation (curve.csv rows) whose accuracy is >= threshold."""
    return tta([(r["epoch"], r["accuracy"]) for r in rows], threshold)


def aat(curve: Curve, budget_s: float) -> float | None:
    best = None
    for time_s, acc in curve:
        if time_s <= budget_s:
            best = acc
        else:
            break
    return best


def tta_all(curve: Curve, ts: Iterable[float]) -> list[float | None]:
    return [tta(curve, t) for t in ts]


def ttmt_points(ts: Sequence[float], times: Sequence[float | None]) -> list[tuple[float, float]]:
    """The reached points (TTA(T), T) of the TTMT curve, given TTA for each threshold."""
    return [(t_s, thr) for thr, t_s in zip(ts, times) if t_s is not None]


def ttmt(curve: Curve, ts: Sequence[float]) -> list[tuple[float, float]]:
    """The reached points (TTA(T), T) of the TTMT curve, in threshold order."""
    return ttmt_points(ts, tta_all(curve, ts))


def prefix_attmt(times: Sequence[float | None]) -> list[float | None]:
    """ATTMT(LOW..T_i) for every i, from TTA(T_0), TTA(T_1), ...: the mean of TTA(T_0..T_i),
    None from the first threshold not reached on. The one implementation of ATTMT."""
    out: list[float | None] = []
    total = 0.0
    for i, v in enumerate(times):
        if v is None or (out and out[-1] is None):
            out.append(None)
            continue
        total += v
        out.append(total / (i + 1))
    return out


def attmt_of(times: Sequence[float | None]) -> float | None:
    """ATTMT over all the thresholds whose TTA are `times`; None unless every one was reached."""
    return prefix_attmt(times)[-1] if times else None


def attmt(curve: Curve, low: float, high: float, step: float) -> float | None:
    return attmt_of(tta_all(curve, thresholds(low, high, step)))


def summarize(
    curve: Curve,
    spec: tuple[float, float, float] | None = None,
    target: float | None = None,
    budget_s: float | None = None,
) -> dict:
    """The metrics of one curve, in the shape of ``ttabench metrics --json``."""
    out: dict = {}
    if spec is not None:
        ts = thresholds(*spec)
        times = tta_all(curve, ts)
        out["thresholds"] = ts
        out["tta_s"] = times
        out["ttmt"] = [list(p) for p in ttmt_points(ts, times)]
        out["attmt_s"] = attmt_of(times)
    if budget_s is not None:
        out["aat"] = aat(curve, budget_s)
    if target is not None:
        out["target_tta_s"] = tta(curve, target)
    return out


def summary_block(
    rows: Sequence[dict],
    threshold_spec: str | None,
    target: float | None,
    budget_s: float | None,
    parsed: tuple[float, float, float] | None = None,
) -> dict:
    """summary.json's ``metrics`` block from curve.csv rows alone: what a run records
    and what ``ttabench validate`` recomputes to check it. `parsed`: `threshold_spec`
    already parsed (a run's configuration holds it so), else it is parsed here."""
    spec = parsed if parsed is not None else parse_thresholds(threshold_spec) if threshold_spec else None
    m = summarize([(r["train_time_s"], r["accuracy"]) for r in rows], spec, target=target, budget_s=budget_s)
    m["threshold_spec"] = threshold_spec
    m["target"] = target
    m["budget_s"] = budget_s
    m["final_accuracy"] = rows[-1]["accuracy"] if rows else None
    m["best_accuracy"] = max((r["accuracy"] for r in rows), default=None)
    return m
