"""Statistics across runs (seeds) of one configuration, as pure functions.

MLPerf Training answers run-to-run variance with several runs and an olympic
mean; the TTMT paper shows TTA at one threshold varies much more across seeds
than ATTMT. These functions make both visible with exact, documented rules:

- mean: the arithmetic mean; None for no values.
- olympic mean: drop ONE lowest and ONE highest value (only one of each when
  several are tied), then the arithmetic mean of the rest, as MLPerf scores a
  benchmark. Defined for n >= 3 only: with one or two values there is nothing
  left after dropping the extremes, and quietly falling back to the plain mean
  would present a 2-run number as if it were robust. n < 3 gives None, and
  ``describe`` says why in its notes.
- variance / std: the sample variance with n - 1 in the denominator, and its
  square root; None for n < 2.
- cv: the coefficient of variation std / mean; None when std is None or the
  mean is 0.
- ci95: a 95 % bootstrap confidence interval of the mean by the percentile
  method: BOOTSTRAP_RESAMPLES (10000) resamples of n values drawn with
  replacement by ``random.Random(BOOTSTRAP_SEED)`` (seed 0), the mean of each,
  and the 2.5th and 97.5th percentiles of those means with linear
  interpolation between order statistics (NumPy's default percentile method).
  The fixed seed makes the interval reproducible to the last bit. None for
  n < 2 (one value has no spread to resample).

Values that do not exist (a run that never reached a threshold) are never
passed in here: the caller excludes them and says so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0
OLYMPIC_MIN_RUNS = 3


def _fmean(xs: Sequence[float]) -> float:
    """fsum / n, exact to the last bit; for values so large that their sum overflows, the sum
    of x / n instead (finite, never an OverflowError)."""
    try:
        return math.fsum(xs) / len(xs)
    except OverflowError:
        n = len(xs)
        return math.fsum(x / n for x in xs)


def mean(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    return _fmean(xs)


def mean_of_all(xs: Sequence[float | None]) -> float | None:
    """The mean when every value exists; None for no values or when any is None (a group of
    runs has a value only when every run has it: dropping the others would flatter it)."""
    if not xs or any(x is None for x in xs):
        return None
    return _fmean(xs)


def column_means(per_run: Sequence[Sequence[float | None]]) -> list[float | None]:
    """``mean_of_all`` of each column of a table with one row per run."""
    return [mean_of_all(col) for col in zip(*per_run)]


def olympic_mean(xs: Sequence[float]) -> float | None:
    """Mean after dropping one minimum and one maximum; None for fewer than 3 values."""
    if len(xs) < OLYMPIC_MIN_RUNS:
        return None
    return _fmean(sorted(xs)[1:-1])


def variance(xs: Sequence[float]) -> float | None:
    """Sample variance (n - 1 in the denominator); None for fewer than 2 values."""
    n = len(xs)
    if n < 2:
        return None
    m = _fmean(xs)
    try:
        return math.fsum((x - m) ** 2 for x in xs) / (n - 1)
    except OverflowError:  # the spread of values near the float limit: larger than any float
        return math.inf


def std(xs: Sequence[float]) -> float | None:
    v = variance(xs)
    return None if v is None else math.sqrt(v)


def cv(xs: Sequence[float]) -> float | None:
    """Coefficient of variation std / mean; None when undefined (n < 2 or mean 0)."""
    s, m = std(xs), mean(xs)
    if s is None or not m:
        return None
    return s / m


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, linear between order statistics."""
    if not sorted_xs:
        raise ValueError("percentile of no values")
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


def bootstrap_ci(
    xs: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean; None for fewer than 2 values."""
    n = len(xs)
    if n < 2:
        return None
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    rng = random.Random(seed)
    draw = rng.random  # int(random() * n) is uniform on 0..n-1 and stable across Python versions
    means = sorted(_fmean([xs[int(draw() * n)] for _ in range(n)]) for _ in range(resamples))
    alpha = 1 - level
    return percentile(means, alpha / 2), percentile(means, 1 - alpha / 2)


def describe(xs: Sequence[float]) -> dict:
    """All of the above for one metric, with a note for each value that is undefined."""
    xs = list(xs)
    ci = bootstrap_ci(xs)
    notes = []
    if len(xs) < OLYMPIC_MIN_RUNS:
        notes.append(
            f"olympic mean needs at least {OLYMPIC_MIN_RUNS} runs (drops the min and the max), got {len(xs)}"
        )
    if len(xs) < 2:
        notes.append(f"variance, std, cv and ci95 need at least 2 runs, got {len(xs)}")
    return {
        "n": len(xs),
        "values": xs,
        "mean": mean(xs),
        "olympic_mean": olympic_mean(xs),
        "variance": variance(xs),
        "std": std(xs),
        "cv": cv(xs),
        "ci95": None if ci is None else [ci[0], ci[1]],
        "notes": notes,
    }
