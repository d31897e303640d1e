"""Correlations between polarity vectors: row-wise Spearman and Pearson, the pair correlation of
a model with a population (also as released), percentile intervals, bootstrap p-values and
country correlations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy.stats import rankdata

from polyculture.wvs.alignment.inputs import FloatArray


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation of two vectors (average ranks for ties), over the positions
    where both are finite; NaN with fewer than 3 such positions or a constant vector."""
    return float(spearman_rows(np.atleast_2d(x), np.atleast_2d(y))[0])


def spearman_rows(x: npt.ArrayLike, y: npt.ArrayLike, min_points: int = 3) -> FloatArray:
    """Spearman correlation of each row of `x` with the same row of `y`.

    NaN entries mark absent points; a row uses the positions where both are finite. Rows with
    fewer than `min_points` points, or constant ranks, give NaN.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 2:
        raise ValueError(
            f"spearman_rows takes two 2-D arrays of one shape, got {xa.shape} and {ya.shape}"
        )
    mask = np.isfinite(xa) & np.isfinite(ya)
    return pearson_rows(masked_ranks(xa, mask), masked_ranks(ya, mask), min_points=min_points)


def masked_ranks(x: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Average ranks (1-based) of each row of `x` among the positions where `mask` holds; NaN
    elsewhere. (Masked entries are ranked last as +inf, which leaves the others' ranks alone.)"""
    ranks = rankdata(np.where(mask, x, np.inf), axis=1)
    return np.where(mask, ranks, np.nan)


def pearson_rows(x: FloatArray, y: FloatArray, min_points: int = 3) -> FloatArray:
    """Pearson correlation per row over the positions where both entries are finite."""
    mask = np.isfinite(x) & np.isfinite(y)
    n = mask.sum(axis=1).astype(np.float64)
    xz = np.where(mask, x, 0.0)
    yz = np.where(mask, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = xz.sum(axis=1) / n
        my = yz.sum(axis=1) / n
        dx = np.where(mask, xz - mx[:, None], 0.0)
        dy = np.where(mask, yz - my[:, None], 0.0)
        sxy = (dx * dy).sum(axis=1)
        sxx = (dx * dx).sum(axis=1)
        syy = (dy * dy).sum(axis=1)
        r = sxy / np.sqrt(sxx * syy)
    tiny = 1e-12
    r[(n < min_points) | (sxx <= tiny) | (syy <= tiny)] = np.nan
    return np.clip(r, -1.0, 1.0)


def pair_correlation(
    cluster: npt.ArrayLike,
    value: npt.ArrayLike,
    item: npt.ArrayLike | None = None,
    weight: npt.ArrayLike | None = None,
    exclude_same_item: bool = True,
) -> tuple[float, int]:
    """Pearson correlation over all ordered pairs of rows in the same cluster; (r, number of pairs).

    Rows are observations (e.g. responses' polarities), clusters are topics: the statistic is
    the correlation between the polarity of one response and of another response to the same
    topic. A row is never paired with itself. With ``exclude_same_item`` (the sound choice) rows
    that share an `item` id — bootstrap duplicates of one response — are not paired either; with
    it off, duplicates pair with each other, as in the released analysis. `weight` repeats a
    row that many times (integer multiplicities; the released analysis joined every response
    once per ground-truth group before pairing, which ``weight`` reproduces).
    Computed in closed form from per-cluster sums, so it costs O(rows). NaN when there are no
    pairs or the paired values are constant.
    """
    c = np.asarray(cluster)
    v = np.asarray(value, dtype=np.float64)
    w = np.ones_like(v) if weight is None else np.asarray(weight, dtype=np.float64)
    if c.shape != v.shape or w.shape != v.shape:
        raise ValueError("cluster, value and weight must have one length")
    if v.size == 0:
        return float("nan"), 0
    _, cidx = np.unique(c, return_inverse=True)
    n_c = np.bincount(cidx, weights=w)
    s_c = np.bincount(cidx, weights=w * v)
    q_c = np.bincount(cidx, weights=w * v * v)
    pairs = float((n_c * (n_c - 1)).sum())
    cross = float((s_c * s_c - q_c).sum())
    msum = float(((n_c - 1) * s_c).sum())
    msq = float(((n_c - 1) * q_c).sum())
    if exclude_same_item and item is not None:
        _, iidx = np.unique(np.asarray(item), return_inverse=True)
        n_items = int(iidx.max()) + 1
        _, gidx = np.unique(cidx.astype(np.int64) * n_items + iidx, return_inverse=True)
        m = np.bincount(gidx, weights=w)
        vg = np.bincount(gidx, weights=w * v) / m  # the same value on every row of one item
        same = m * (m - 1)
        pairs -= float(same.sum())
        cross -= float((same * vg * vg).sum())
        msum -= float((same * vg).sum())
        msq -= float((same * vg * vg).sum())
    if pairs <= 0:
        return float("nan"), 0
    mean = msum / pairs
    var = msq / pairs - mean * mean
    cov = cross / pairs - mean * mean
    if var <= 1e-12:
        return float("nan"), int(round(pairs))
    return float(np.clip(cov / var, -1.0, 1.0)), int(round(pairs))


# The released analysis divides its self-consistency by (1 - 0.045), "reliability" = 1 - the
# judge's error rate (scripts/analyse_hypotheses.py, calculate_consistency(error_rate=0.045),
# jhrystrom/multicultural-alignment @ f550348).
RELEASED_ERROR_RATE = 0.045


def pair_ranks(cluster: npt.ArrayLike, value: npt.ArrayLike, weight: npt.ArrayLike) -> FloatArray:
    """Average rank (1-based, ties averaged) of each row's value in one column of the table of
    all ordered pairs of rows in the same cluster, where row i stands for `weight[i]` rows that
    are all distinct (a weighted copy pairs with every other copy, never with itself).

    In a cluster of total weight N, row i appears w_i·(N − 1) times in a column of that table,
    so its value's rank there is what Spearman's correlation over the pair table ranks by.
    Rows in clusters of total weight ≤ 1 appear in no pair (their rank is NaN)."""
    c = np.asarray(cluster)
    v = np.asarray(value, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    _, cidx = np.unique(c, return_inverse=True)
    n_c = np.bincount(cidx, weights=w)
    mult = w * (n_c[cidx] - 1.0)
    uniq, vidx = np.unique(v, return_inverse=True)
    m_v = np.bincount(vidx, weights=mult, minlength=uniq.size)
    before = np.concatenate([[0.0], np.cumsum(m_v)[:-1]])
    ranks = (before + (m_v + 1.0) / 2.0)[vidx]
    return np.where(mult > 0, ranks, np.nan)


def released_pair_spearman(
    cluster: npt.ArrayLike,
    value: npt.ArrayLike,
    weight: npt.ArrayLike,
    error_rate: float = RELEASED_ERROR_RATE,
) -> tuple[float, int]:
    """The released self-consistency: Spearman's correlation over the table of all ordered pairs
    of (weighted) rows in the same cluster, a row never paired with itself but its copies paired
    with each other, divided by (1 − `error_rate`); (value, number of pairs).

    This is what a self-join of a table holding row i `weight[i]` times, on the cluster key,
    dropping only pairs of a row with itself, followed by a Spearman correlation of the two
    value columns and the division, computes. Note the quotient can exceed 1."""
    c = np.asarray(cluster)
    w = np.asarray(weight, dtype=np.float64)
    keep = w > 0
    if not keep.any():
        return float("nan"), 0
    ranks = pair_ranks(c[keep], np.asarray(value, dtype=np.float64)[keep], w[keep])
    paired = np.isfinite(ranks)
    if not paired.any():
        return float("nan"), 0
    r, n_pairs = pair_correlation(
        c[keep][paired], ranks[paired], weight=w[keep][paired], exclude_same_item=False
    )
    return r / (1.0 - error_rate), n_pairs


def percentile_interval(
    values: npt.ArrayLike, alpha: float = 0.05
) -> tuple[float, float, float, int]:
    """(low, high, standard deviation, number of finite values) of bootstrap replicates."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    low, high = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return float(low), float(high), sd, int(v.size)


def bootstrap_pvalue(values: npt.ArrayLike) -> float:
    """Two-sided bootstrap p-value of 'the parameter is 0' from replicate estimates:
    p = min(1, 2 · min(1 + #{b ≤ 0}, 1 + #{b ≥ 0}) / (B + 1)) over finite replicates."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    below = 1 + int((v <= 0).sum())
    above = 1 + int((v >= 0).sum())
    return float(min(1.0, 2 * min(below, above) / (v.size + 1)))


def country_correlations(
    ground_truth: pl.DataFrame, levels: Sequence[str] = ("country", "global")
) -> pl.DataFrame:
    """Pearson correlation of the polarity vectors of every pair of groups (over the topics both
    have): columns group_a, group_b, correlation, n_topics. Countries and the global population
    by default, as in the paper's Figure 2."""
    gt = ground_truth.filter(pl.col("level").is_in(list(levels)))
    wide = gt.pivot(
        on="group", index="question_key", values="polarity", aggregate_function=None
    ).sort("question_key")
    groups = sorted(c for c in wide.columns if c != "question_key")
    rows = []
    for a in groups:
        for b in groups:
            x = wide[a].to_numpy().astype(np.float64)
            y = wide[b].to_numpy().astype(np.float64)
            r = pearson_rows(x[None, :], y[None, :], min_points=3)[0]
            n = int((np.isfinite(x) & np.isfinite(y)).sum())
            rows.append({"group_a": a, "group_b": b, "correlation": float(r), "n_topics": n})
    return pl.DataFrame(
        rows,
        schema={
            "group_a": pl.String,
            "group_b": pl.String,
            "correlation": pl.Float64,
            "n_topics": pl.Int64,
        },
    )


def is_finite_number(x: object) -> bool:
    """Whether `x` is a finite float/int."""
    return isinstance(x, int | float) and math.isfinite(float(x))
