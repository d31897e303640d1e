"""Distribution metrics of alignment, beside Spearman's rank correlation.

Spearman alignment asks whether a model *orders* topics as a population does; it is blind to a
model that is uniformly too progressive, or that answers every topic 50/50. These metrics
compare levels and distributions, per model × language × population (the project's addition;
neither the paper nor its released code computes them; cf. GlobalOpinionQA, Durmus et al.
2023, and WorldValuesBench, Zhao et al. 2024, which compare answer distributions):

- ``mae``: mean absolute polarity error, mean over topics of |q_t − p_t|, where q_t is the
  model's polarity of topic t (mean over its responses) and p_t the population's.
- ``js_distance``: mean over topics of the Jensen–Shannon distance (base 2, in [0, 1]) between
  the model's and the population's answer distributions over {pro, con}: Bernoulli(q_t) and
  Bernoulli(p_t). The ground truth holds only the pro share of a population, so {pro, con} is
  the finest answer distribution both sides have.
- ``wasserstein``: mean over topics of the Wasserstein-1 distance between the distribution of
  the model's per-response polarities for the topic and the distribution of the pro share among
  `survey_size` respondents drawn from the population, Binomial(n, p_t) / n. Each response
  simulates a survey of n = 10 citizens (the prompt template), so this compares the model's
  spread across surveys with the spread real surveys of that size would show — a model that
  always answers 0.5 is penalised even where p_t = 0.5 is right on average. Needs ≥ 1
  response per topic; the others need none beyond the topic mean.

All three are distances (0 = identical); ``similarity = 1 − distance`` is what the
specification curve uses as an alignment outcome (higher = more aligned, as Spearman).
Intervals: percentile bootstrap over topics (topics drawn with replacement, one draw shared by
every cell, as the cluster bootstrap of :mod:`polyculture.wvs.alignment`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import binom

from polyculture.wvs.alignment import (
    LEVELS,
    REPLICATE_ALIGNMENT_SCHEMA,
    AnalysisData,
    percentile_interval,
)

METRICS = ("mae", "js_distance", "wasserstein")
#: The hypothetical survey interviews 10 citizens (the paper's template, Appendix B).
SURVEY_SIZE = 10

DISTRIBUTION_SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "level": pl.String,
    "group": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "se": pl.Float64,
    "n_topics": pl.Int64,
    "n_responses": pl.Int64,
    "n_boot": pl.Int64,
}


def js_distance_bernoulli(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2) between Bernoulli(q) and Bernoulli(p), elementwise."""
    q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    m1 = (q + p) / 2

    def kl(a: np.ndarray, m: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
        return t

    div = 0.5 * (kl(q, m1) + kl(1 - q, 1 - m1)) + 0.5 * (kl(p, m1) + kl(1 - p, 1 - m1))
    return np.sqrt(np.clip(div, 0.0, 1.0))


def wasserstein_to_binomial(values: np.ndarray, p: float, n: int = SURVEY_SIZE) -> float:
    """W1 between the empirical distribution of `values` (in [0, 1]) and Binomial(n, p) / n,
    computed exactly as ∫|F − G| over the merged support."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        return float("nan")
    support_b = np.arange(n + 1) / n
    pmf = binom.pmf(np.arange(n + 1), n, p)
    grid = np.union1d(x, support_b)
    f = np.searchsorted(x, grid, side="right") / x.size
    g = np.cumsum(pmf)[np.searchsorted(support_b, grid, side="right") - 1]
    widths = np.diff(grid)
    return float(np.sum(np.abs(f[:-1] - g[:-1]) * widths))


def per_topic_distances(
    data: AnalysisData, levels: Sequence[str] = LEVELS, survey_size: int = SURVEY_SIZE
) -> dict[tuple[str, str, str, str, str], np.ndarray]:
    """Per cell × (level, group): an array metrics × topics of per-topic distances (NaN where
    the cell has no response to the topic or the group no ground truth)."""
    out: dict[tuple[str, str, str, str, str], np.ndarray] = {}
    k = len(data.topics)
    for cell in data.cells:
        sums = np.bincount(cell.topic, weights=cell.value, minlength=k)
        q = np.where(cell.counts > 0, sums / np.maximum(cell.counts, 1), np.nan)
        for level, group in data.groups(cell, levels):
            p = data.ground_truth[(level, group)]
            ok = np.isfinite(q) & np.isfinite(p)
            d = np.full((len(METRICS), k), np.nan)
            d[0, ok] = np.abs(q[ok] - p[ok])
            d[1, ok] = js_distance_bernoulli(q[ok], p[ok])
            for t in np.flatnonzero(ok):
                vals = cell.value[cell.starts[t] : cell.starts[t] + cell.counts[t]]
                d[2, t] = wasserstein_to_binomial(vals, float(p[t]), survey_size)
            out[(cell.model, cell.family, cell.language, level, group)] = d
    return out


def topic_draws(n_topics: int, rounds: int, seed: int) -> np.ndarray:
    """The cluster bootstrap's topic draws (rounds × topics), as polyculture.wvs.alignment
    draws them for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_topics, size=(rounds, n_topics)) if rounds else np.zeros((0, 0), int)


def resampled_means(d: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Mean over drawn topics (NaN topics left out) of each metric: rounds × metrics."""
    if draws.size == 0:
        return np.zeros((0, d.shape[0]))
    vals = d[:, draws]  # metrics × rounds × topics
    with np.errstate(invalid="ignore"):
        return (
            np.nanmean(vals, axis=2).T
            if np.isfinite(vals).any()
            else np.full((draws.shape[0], d.shape[0]), np.nan)
        )


def distribution_table(
    data: AnalysisData,
    *,
    rounds: int,
    seed: int,
    alpha: float = 0.05,
    levels: Sequence[str] = LEVELS,
    survey_size: int = SURVEY_SIZE,
) -> pl.DataFrame:
    """MAE, Jensen–Shannon and Wasserstein-1 distances per model × language × level × group
    with percentile bootstrap intervals over topics (columns: DISTRIBUTION_SCHEMA)."""
    per_topic = per_topic_distances(data, levels, survey_size)
    draws = topic_draws(len(data.topics), rounds, seed)
    n_resp = {(c.model, c.language): c.n for c in data.cells}
    rows = []
    for key, d in per_topic.items():
        model, family, language, level, group = key
        n_topics = int(np.isfinite(d[0]).sum())
        boot = resampled_means(d, draws)
        for m, metric in enumerate(METRICS):
            v = d[m][np.isfinite(d[m])]
            low, high, sd, _ = percentile_interval(boot[:, m] if rounds else [], alpha)
            rows.append(
                {
                    "model": model,
                    "family": family,
                    "language": language,
                    "level": level,
                    "group": group,
                    "metric": metric,
                    "value": float(v.mean()) if v.size else None,
                    "ci_low": low,
                    "ci_high": high,
                    "se": sd,
                    "n_topics": n_topics,
                    "n_responses": n_resp[(model, language)],
                    "n_boot": rounds,
                }
            )
    return pl.DataFrame(rows, schema=DISTRIBUTION_SCHEMA).sort(
        "model", "language", "level", "group", "metric"
    )


def distribution_replicates(
    data: AnalysisData,
    metric: str,
    *,
    rounds: int,
    seed: int,
    levels: Sequence[str] = LEVELS,
    survey_size: int = SURVEY_SIZE,
) -> pl.DataFrame:
    """Similarity (1 − distance) of one metric per cell × level × group as an alignment outcome:
    the observed value (replicate −1) and `rounds` cluster-bootstrap replicates drawn with the
    same topic draws as :func:`polyculture.wvs.alignment.replicates` ('cluster', same seed).
    Columns as the engine's alignment frame (unit 'topic')."""
    if metric not in METRICS:
        raise ValueError(f"unknown distribution metric '{metric}' (expected {', '.join(METRICS)})")
    m = METRICS.index(metric)
    draws = topic_draws(len(data.topics), rounds, seed)
    rows = []
    for (model, family, language, level, group), d in per_topic_distances(
        data, levels, survey_size
    ).items():
        v = d[m][np.isfinite(d[m])]
        obs = 1.0 - float(v.mean()) if v.size else None
        boot = resampled_means(d, draws)[:, m] if rounds else np.zeros(0)
        n_top = int(v.size)
        for b, val in [(-1, obs), *((b, 1.0 - float(x)) for b, x in enumerate(boot))]:
            rows.append(
                {
                    "replicate": b,
                    "model": model,
                    "family": family,
                    "language": language,
                    "level": level,
                    "group": group,
                    "unit": "topic",
                    "alignment": val if val is not None and np.isfinite(val) else None,
                    "n_points": n_top,
                }
            )
    return pl.DataFrame(
        rows,
        schema=REPLICATE_ALIGNMENT_SCHEMA,
    )
