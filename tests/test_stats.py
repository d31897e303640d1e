"""polyculture.stats against cases whose bootstrap distributions can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from polyculture.stats import (
    bootstrap_ci,
    paired_bootstrap,
    paired_bootstrap_pvalue,
    resample_indices,
)


def test_bootstrap_ci_of_two_values_covers_the_exact_resample_distribution() -> None:
    # Resample means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4:
    # the 2.5% quantile is 0, the 97.5% quantile is 1.
    ci = bootstrap_ci([0.0, 1.0], np.mean, n_boot=4000, seed=7, alpha=0.05)
    assert ci.estimate == 0.5
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert ci.n == 2 and ci.n_boot == 4000 and ci.n_valid == 4000
    # Standard error of a resample mean: sqrt(p(1-p)/n) = sqrt(0.25 / 2) ≈ 0.354.
    assert ci.se == pytest.approx(np.sqrt(0.125), abs=0.02)


def test_bootstrap_ci_of_constant_data_is_a_point() -> None:
    ci = bootstrap_ci(np.full(9, 3.5), np.median, n_boot=200, seed=1)
    assert (ci.estimate, ci.low, ci.high, ci.se) == (3.5, 3.5, 3.5, 0.0)


def test_vectorised_mean_and_generic_statistic_draw_the_same_resamples() -> None:
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.25])
    fast = bootstrap_ci(values, np.mean, n_boot=1500, seed=11)
    slow = bootstrap_ci(values, lambda v: float(v.sum() / v.size), n_boot=1500, seed=11)
    assert fast == pytest.approx(slow)
    # Index mode: the statistic gets the indices, the caller maps them to its data.
    by_index = bootstrap_ci(values.size, lambda idx: values[idx].mean(), n_boot=1500, seed=11)
    assert by_index == pytest.approx(fast)


def test_bootstrap_ci_resamples_rows_of_a_2d_array() -> None:
    x = np.arange(20, dtype=float)
    pairs = np.column_stack([x, 2 * x + 1])  # perfectly correlated pairs stay perfect

    def corr(rows: np.ndarray) -> float:
        if np.ptp(rows[:, 0]) == 0:
            return float("nan")
        return float(np.corrcoef(rows[:, 0], rows[:, 1])[0, 1])

    ci = bootstrap_ci(pairs, corr, n_boot=300, seed=3)
    assert ci.estimate == pytest.approx(1.0)
    assert ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)


def test_bootstrap_ci_counts_degenerate_resamples() -> None:
    # With two units, half of all resamples hold one unit twice and give NaN here.
    def spread(v: np.ndarray) -> float:
        return float("nan") if np.ptp(v) == 0 else float(np.ptp(v))

    ci = bootstrap_ci([1.0, 2.0], spread, n_boot=2000, seed=5)
    assert 850 < ci.n_valid < 1150
    assert (ci.low, ci.high) == (1.0, 1.0)


def test_bootstrap_is_seeded() -> None:
    values = np.random.default_rng(0).normal(size=30)
    assert bootstrap_ci(values, np.mean, 500, 9) == bootstrap_ci(values, np.mean, 500, 9)
    assert bootstrap_ci(values, np.mean, 500, 9) != bootstrap_ci(values, np.mean, 500, 10)
    idx = resample_indices(5, 2500, seed=4)
    assert idx.shape == (2500, 5) and idx.min() >= 0 and idx.max() <= 4
    np.testing.assert_array_equal(idx, resample_indices(5, 2500, seed=4))


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        ([], {}, "empty"),
        (0, {}, "empty"),
        ([1.0], {"n_boot": 0}, "n_boot"),
        ([1.0], {"alpha": 1.0}, "alpha"),
    ],
)
def test_bootstrap_ci_rejects_bad_arguments(data, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(data, np.mean, **kwargs)


def test_paired_bootstrap_matches_the_exact_enumeration() -> None:
    # d = a - b = [1, 0, 0]; δ = 1/3. A resample mean is k/3 with k ~ Binomial(3, 1/3);
    # |k/3 - 1/3| >= 1/3 iff k = 0 or k >= 2: p = (8 + 6 + 1) / 27 = 5/9.
    a, b = [1, 0, 0], [0, 0, 0]
    exact = binom.pmf(0, 3, 1 / 3) + binom.pmf(2, 3, 1 / 3) + binom.pmf(3, 3, 1 / 3)
    assert exact == pytest.approx(15 / 27)
    res = paired_bootstrap(a, b, n_boot=20_000, seed=2)
    assert res.delta == pytest.approx(1 / 3)
    assert res.p_value == pytest.approx(15 / 27, abs=0.015)
    # P(k = 0) = 8/27 > 2.5% and P(k <= 2) = 26/27 < 97.5%: the interval is [0, 1].
    assert (res.low, res.high) == (0.0, pytest.approx(1.0))
    assert paired_bootstrap_pvalue(a, b, 20_000, 2) == res.p_value


def test_paired_bootstrap_extremes() -> None:
    same = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1], n_boot=999, seed=0)
    assert (same.delta, same.p_value) == (0.0, 1.0)
    # A constant improvement on every item: no resample strays from δ, p = 1 / (B + 1).
    shifted = paired_bootstrap([1.0] * 8, [0.0] * 8, n_boot=999, seed=0)
    assert shifted.delta == 1.0
    assert shifted.p_value == pytest.approx(1 / 1000)
    # Symmetric: swapping the systems flips δ and keeps p.
    a = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    b = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0]
    fwd, rev = paired_bootstrap(a, b, 2000, 8), paired_bootstrap(b, a, 2000, 8)
    assert fwd.delta == -rev.delta == pytest.approx(0.4)
    assert fwd.p_value == rev.p_value
    assert fwd.p_value < 0.05  # 4 wins, 0 losses in 10 items


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1, 0], [1], "length"),
        ([], [], "empty"),
        ([1, float("nan")], [0, 0], "finite"),
        ([[1, 0]], [[1, 0]], "1-D"),
    ],
)
def test_paired_bootstrap_rejects_bad_input(a, b, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b, n_boot=10, seed=0)
