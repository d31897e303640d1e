"""Bootstrap statistics shared by both pipelines: plain percentile CIs and paired tests.

Every function takes an explicit seed and draws from ``numpy.random.default_rng(seed)`` in fixed
chunks, so the same inputs and seed give the same numbers on every machine.

- :func:`bootstrap_ci` resamples the units of any data set (values, rows of a 2-D array, or just
  ``n`` indices that the statistic maps to whatever it needs) with replacement and returns the
  statistic on the full data and its percentile interval.
- :func:`paired_bootstrap` (:func:`paired_bootstrap_pvalue`: its p-value alone) compares two
  systems scored on the same items (e.g. adapter vs base on the same BLEnD questions): it
  resamples items, recomputes the mean difference, and returns the two-sided p-value of "no
  difference" from the centred bootstrap distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_CHUNK = 1000  # resamples drawn per call to the generator (fixed, so results never depend on it)


@dataclass(frozen=True)
class BootstrapCI:
    """Statistic on the full data and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    se: float
    n: int
    n_boot: int
    n_valid: int  # resamples whose statistic was finite (degenerate resamples give NaN)


@dataclass(frozen=True)
class PairedBootstrap:
    """Paired comparison of two systems over the same items: mean(a - b) and its p-value."""

    delta: float
    low: float
    high: float
    p_value: float
    n: int
    n_boot: int


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def resample_indices(n: int, n_boot: int, seed: int) -> npt.NDArray[np.int64]:
    """`n_boot` × `n` matrix of indices drawn uniformly with replacement from 0..n-1 (seeded)."""
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    parts = []
    left = n_boot
    while left > 0:
        size = min(_CHUNK, left)
        parts.append(rng.integers(0, n, size=(size, n), dtype=np.int64))
        left -= size
    return np.concatenate(parts, axis=0)


def _iter_index_chunks(n: int, n_boot: int, seed: int):
    """Same draws as :func:`resample_indices`, yielded chunk by chunk to bound memory."""
    rng = np.random.default_rng(seed)
    left = n_boot
    while left > 0:
        size = min(_CHUNK, left)
        yield rng.integers(0, n, size=(size, n), dtype=np.int64)
        left -= size


def bootstrap_ci(
    data: npt.ArrayLike | int,
    statistic: Callable[[Any], float] = np.mean,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile bootstrap interval of `statistic` over the units of `data`.

    `data` is either an array (resampled along its first axis: values, or rows such as
    (x, y) pairs of a correlation) — `statistic` then receives the resampled array — or an
    integer ``n``, in which case `statistic` receives an index array of length ``n`` drawn with
    replacement from ``0..n-1`` (for data a caller keeps elsewhere, e.g. a table's rows).
    Resamples whose statistic is not finite are left out of the interval and counted.
    """
    _check_boot(n_boot, alpha)
    if isinstance(data, int | np.integer) and not isinstance(data, bool):
        n = int(data)
        values = None
    else:
        values = np.asarray(data)
        if values.ndim == 0:
            raise ValueError("data must be an array of units or an integer count, got a scalar")
        n = values.shape[0]
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample")

    def apply(idx: npt.NDArray[np.int64]) -> float:
        return float(statistic(idx if values is None else values[idx]))

    estimate = apply(np.arange(n))
    if values is not None and values.ndim == 1 and statistic in (np.mean, np.nanmean):
        # Same draws, vectorised: the mean of each resample row at once.
        stats = np.concatenate(
            [
                statistic(values[idx].astype(np.float64), axis=1)
                for idx in _iter_index_chunks(n, n_boot, seed)
            ]
        )
    else:
        stats = np.empty(n_boot, dtype=np.float64)
        pos = 0
        for chunk in _iter_index_chunks(n, n_boot, seed):
            for row in chunk:
                stats[pos] = apply(row)
                pos += 1
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return BootstrapCI(estimate, float("nan"), float("nan"), float("nan"), n, n_boot, 0)
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    se = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return BootstrapCI(estimate, float(low), float(high), se, n, n_boot, int(finite.size))


def paired_bootstrap(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedBootstrap:
    """Paired bootstrap test of mean(a) − mean(b) over the same items.

    `a` and `b` hold one score per item (same order, same length; e.g. 0/1 matches of the
    adapter and of the base model on each BLEnD question). Items are resampled with
    replacement ``n_boot`` times; δ* is the mean difference of a resample. The two-sided
    p-value of "no difference" uses the bootstrap distribution centred on the observed δ
    (the null shifts it to 0):

        p = (1 + #{ |δ*_b − δ| ≥ |δ| }) / (n_boot + 1)

    so p = 1 when δ = 0 and p = 1 / (n_boot + 1) when every resample differs from δ by less
    than |δ|. `low`/`high` are the percentile interval of δ at level 1 − alpha.
    """
    _check_boot(n_boot, alpha)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError("paired bootstrap takes two 1-D arrays of per-item scores")
    if x.shape != y.shape:
        raise ValueError(f"paired scores differ in length: {x.shape[0]} vs {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired scores must be finite (drop or score missing items first)")
    n = x.shape[0]
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample")
    d = x - y
    delta = float(d.mean())
    deltas = np.concatenate([d[idx].mean(axis=1) for idx in _iter_index_chunks(n, n_boot, seed)])
    # A tolerance keeps floating-point noise from deciding ties such as δ* = 2δ exactly.
    tol = 1e-12 * max(1.0, abs(delta))
    extreme = int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta) - tol))
    p_value = (1 + extreme) / (n_boot + 1)
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return PairedBootstrap(delta, float(low), float(high), float(min(1.0, p_value)), n, n_boot)


def paired_bootstrap_pvalue(
    a: npt.ArrayLike, b: npt.ArrayLike, n_boot: int = 10_000, seed: int = 0
) -> float:
    """Two-sided paired bootstrap p-value of mean(a) = mean(b) (see :func:`paired_bootstrap`)."""
    return paired_bootstrap(a, b, n_boot, seed).p_value
