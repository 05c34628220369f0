"""divisions.stats: statistics across runs, each expectation worked out by hand."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ttabench.divisions import stats


def test_mean():
    assert stats.mean([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert stats.mean([7.0]) == 7.0
    assert stats.mean([]) is None


def test_olympic_mean_drops_one_min_and_one_max():
    # sorted 1, 2, 3, 4, 10 -> drop 1 and 10 -> (2 + 3 + 4) / 3
    assert stats.olympic_mean([4.0, 10.0, 1.0, 3.0, 2.0]) == 3.0


def test_olympic_mean_ties_drop_only_one_of_each():
    # 2, 2, 7, 9, 9: one 2 and one 9 go, (2 + 7 + 9) / 3 = 6 remains
    assert stats.olympic_mean([9.0, 2.0, 7.0, 2.0, 9.0]) == 6.0
    # 10, 10, 10, 20: one 10 and the 20 go -> (10 + 10) / 2
    assert stats.olympic_mean([10.0, 20.0, 10.0, 10.0]) == 10.0
    # all equal
    assert stats.olympic_mean([5.0, 5.0, 5.0]) == 5.0


def test_olympic_mean_n3_is_the_median():
    assert stats.olympic_mean([3.0, 1.0, 2.0]) == 2.0


@pytest.mark.parametrize("xs", [[], [4.0], [4.0, 8.0]])
def test_olympic_mean_undefined_below_three_runs(xs):
    # The documented rule: n < 3 -> None (not the plain mean).
    assert stats.olympic_mean(xs) is None


def test_variance_and_std_sample_n_minus_1():
    # 2 4 4 4 5 5 7 9: mean 5, squared deviations 9 1 1 1 0 0 4 16 = 32, / (8 - 1)
    xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert stats.variance(xs) == pytest.approx(32 / 7, rel=1e-15)
    assert stats.std(xs) == pytest.approx(math.sqrt(32 / 7), rel=1e-15)
    # 1, 3: mean 2, (1 + 1) / 1 = 2
    assert stats.variance([1.0, 3.0]) == 2.0
    assert stats.std([1.0, 3.0]) == math.sqrt(2.0)


@pytest.mark.parametrize("xs", [[], [3.0]])
def test_variance_undefined_below_two(xs):
    assert stats.variance(xs) is None
    assert stats.std(xs) is None
    assert stats.cv(xs) is None


def test_cv():
    # std sqrt(2), mean 2
    assert stats.cv([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2, rel=1e-15)
    assert stats.cv([-1.0, 1.0]) is None  # mean 0: undefined, not infinity
    assert stats.cv([4.0, 4.0]) == 0.0


def test_percentile_linear_between_order_statistics():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(xs, 0.0) == 1.0
    assert stats.percentile(xs, 1.0) == 4.0
    assert stats.percentile(xs, 0.5) == 2.5  # position 1.5
    assert stats.percentile(xs, 0.25) == 1.75  # position 0.75
    assert stats.percentile([7.0], 0.3) == 7.0


def test_bootstrap_ci_constant_values():
    assert stats.bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)


def test_bootstrap_ci_undefined_below_two():
    assert stats.bootstrap_ci([]) is None
    assert stats.bootstrap_ci([3.0]) is None


def test_bootstrap_ci_two_values():
    # Resample means of {0, 1} with n = 2: 0 (p 1/4), 0.5 (1/2), 1 (1/4). About 2500 of the
    # 10000 sorted means are 0 and 2500 are 1, so the 2.5th percentile (position 249.975)
    # is 0 and the 97.5th (position 9749.025) is 1.
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_bootstrap_ci_is_the_documented_procedure():
    # 10000 resamples drawn with random.Random(0), index int(random() * n), percentile method
    # (checked here against NumPy's percentile), reproducible to the last bit.
    xs = [12.0, 15.5, 11.25, 19.0, 14.0]
    rng = random.Random(0)
    means = [sum(xs[int(rng.random() * 5)] for _ in range(5)) / 5 for _ in range(10000)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    got = stats.bootstrap_ci(xs)
    assert got == pytest.approx((lo, hi), rel=1e-12)
    assert got == stats.bootstrap_ci(xs)  # fixed seed: same interval every time
    assert min(xs) <= got[0] < stats.mean(xs) < got[1] <= max(xs)
    assert stats.BOOTSTRAP_RESAMPLES == 10000 and stats.BOOTSTRAP_SEED == 0


def test_describe_three_values():
    # 30, 24, 16: sum 70, sum of squares 1732, SS = 1732 - 4900/3 = 296/3, variance 148/3
    d = stats.describe([30.0, 24.0, 16.0])
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(70 / 3, rel=1e-15)
    assert d["olympic_mean"] == 24.0
    assert d["variance"] == pytest.approx(148 / 3, rel=1e-14)
    assert d["std"] == pytest.approx(math.sqrt(148 / 3), rel=1e-14)
    assert d["cv"] == pytest.approx(math.sqrt(148 / 3) / (70 / 3), rel=1e-14)
    assert d["ci95"][0] >= 16.0 and d["ci95"][1] <= 30.0
    assert d["notes"] == []


def test_describe_notes_for_small_n():
    d = stats.describe([5.0, 7.0])
    assert d["olympic_mean"] is None and d["mean"] == 6.0
    assert any("olympic mean needs at least 3 runs" in n for n in d["notes"])
    d = stats.describe([])
    assert d["mean"] is None and d["ci95"] is None and d["n"] == 0
    assert len(d["notes"]) == 2
