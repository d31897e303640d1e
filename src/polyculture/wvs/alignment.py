"""Cultural alignment of models with survey populations (stage 7) and the statistics it rests on.

Canonical tables (every input source is normalised to these before any statistic is computed):

- responses: ``model, family, language, question_key, response_id, pro_score`` — one judged
  response (its polarity: pro / (pro + con) of its summaries) per row.
- ground truth: ``level, group, question_key, polarity`` — value polarity of a population;
  level ``country`` (group = country code), ``language`` (group = ISO 639-1 code), ``global``
  (group ``global``) or ``merged`` (group = language: the per-response ground truth a released
  response file carries, where it has one).
- country languages: ``country, language`` — which countries are 'local' to a language.

Alignment is the Spearman correlation between a model's polarity and a population's, per
model × language (a *cell*) × level × group, in one of two units:

- ``topic`` (the paper's definition): the model's polarity of a topic is the mean over its
  responses to that topic; the correlation runs across topics.
- ``response`` (the released code's): every response is paired with its topic's ground truth
  and the correlation runs across responses.

Bootstrap replicates come from one engine, :func:`replicates`, with two schemes:

- ``cluster`` (sound): topics are drawn with replacement — one draw shared by every cell, so the
  dependence between cells that answer the same topics is kept — and each drawn topic brings
  all of the cell's responses to it (resampling responses again within topics would count their
  noise twice). A topic drawn twice forms two clusters.
- ``responses`` (as released): each cell's responses are drawn with replacement (as many as it
  has, or a configured resample size); the topic set is whatever the draw contains.

Self-consistency (stage 8, see :mod:`polyculture.wvs.consistency`) is the Pearson correlation
over all ordered pairs of responses to the same topic (:func:`pair_correlation`); a response is
never paired with itself, and in a bootstrap replicate never with its own duplicates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy.stats import rankdata

from polyculture.errors import InputError

#: Columns and types of the per-replicate alignment table (one row per model, language, level,
#: group and unit in each bootstrap replicate).
REPLICATE_ALIGNMENT_SCHEMA: dict[str, Any] = {
    "replicate": pl.Int64,
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "level": pl.String,
    "group": pl.String,
    "unit": pl.String,
    "alignment": pl.Float64,
    "n_points": pl.Int64,
}

#: Columns and types of the per-replicate self-consistency table (sound and as released).
REPLICATE_CONSISTENCY_SCHEMA: dict[str, Any] = {
    "replicate": pl.Int64,
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "consistency": pl.Float64,
    "consistency_released": pl.Float64,
    "n_pairs": pl.Int64,
}


LEVELS = ("country", "language", "global", "merged")
UNITS = ("topic", "response")
SCHEMES = ("cluster", "responses")

# columns (and their types) of the canonical response and ground-truth tables
RESPONSE_SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "question_key": pl.String,
    "response_id": pl.String,
    "pro_score": pl.Float64,
}
GROUND_TRUTH_SCHEMA = {
    "level": pl.String,
    "group": pl.String,
    "question_key": pl.String,
    "polarity": pl.Float64,
}
RESPONSE_COLUMNS = tuple(RESPONSE_SCHEMA)
GROUND_TRUTH_COLUMNS = tuple(GROUND_TRUTH_SCHEMA)
COUNTRY_LANGUAGE_COLUMNS = ("country", "language")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ----------------------------------------------------------------------------------------------
# Checking canonical tables
# ----------------------------------------------------------------------------------------------


def require_columns(df: pl.DataFrame, columns: Sequence[str], source: object) -> None:
    """Fail naming `source` when `df` lacks any of `columns`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            source,
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected columns: {', '.join(columns)}; found: {', '.join(df.columns) or 'none'}",
        )


def _first_bad_row(df: pl.DataFrame, bad: pl.Expr) -> int | None:
    idx = df.with_row_index("_row").filter(bad)["_row"]
    return int(idx[0]) if idx.len() else None


def _first_duplicate(df: pl.DataFrame, *keys: str) -> dict[str, Any] | None:
    """The first row whose `keys` another row shares, or None when the keys are unique."""
    dup = df.filter(pl.struct(*keys).is_duplicated())
    return dup.row(0, named=True) if dup.height else None


def check_responses(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a canonical response table; return it with its columns in canonical order and type.

    Polarity must lie in [0, 1] and be finite; keys must not be null. Errors name the row
    (0-based, as read) and the column.
    """
    require_columns(df, RESPONSE_COLUMNS, source)
    out = df.select(
        *(pl.col(c).cast(pl.String) for c in RESPONSE_COLUMNS[:5]),
        pl.col("pro_score").cast(pl.Float64, strict=False),
    )
    for c in RESPONSE_COLUMNS:
        row = _first_bad_row(out, pl.col(c).is_null())
        if row is not None:
            raise InputError(source, f"row {row}: column '{c}' is empty (expected a value)")
    row = _first_bad_row(
        out, ~pl.col("pro_score").is_between(0.0, 1.0) | pl.col("pro_score").is_nan()
    )
    if row is not None:
        raise InputError(
            source,
            f"row {row}: pro_score {out['pro_score'][row]} is outside [0, 1] "
            "(expected pro / (pro + con) of one response)",
        )
    r = _first_duplicate(out, "model", "language", "response_id")
    if r is not None:
        raise InputError(
            source,
            f"response_id '{r['response_id']}' occurs more than once for model '{r['model']}', "
            f"language '{r['language']}' (expected one row per response)",
        )
    fam = out.group_by("model").agg(pl.col("family").n_unique().alias("n")).filter(pl.col("n") > 1)
    if fam.height:
        raise InputError(source, f"model '{fam['model'][0]}' has more than one family")
    return out


def check_ground_truth(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a canonical ground-truth table (known levels, polarity in [0, 1], no duplicates)."""
    require_columns(df, GROUND_TRUTH_COLUMNS, source)
    out = df.select(
        pl.col("level").cast(pl.String),
        pl.col("group").cast(pl.String),
        pl.col("question_key").cast(pl.String).str.to_lowercase(),
        pl.col("polarity").cast(pl.Float64, strict=False),
    ).filter(pl.col("polarity").is_not_null() & pl.col("polarity").is_not_nan())
    bad = out.filter(~pl.col("level").is_in(LEVELS))
    if bad.height:
        raise InputError(
            source, f"unknown level '{bad['level'][0]}' (expected one of {', '.join(LEVELS)})"
        )
    row = _first_bad_row(out, ~pl.col("polarity").is_between(0.0, 1.0))
    if row is not None:
        raise InputError(source, f"polarity {out['polarity'][row]} is outside [0, 1]")
    r = _first_duplicate(out, "level", "group", "question_key")
    if r is not None:
        raise InputError(
            source,
            f"two polarities for level '{r['level']}', group '{r['group']}', "
            f"topic '{r['question_key']}' (expected one)",
        )
    return out


def check_country_languages(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a country → language table (country codes upper case, one language per country)."""
    require_columns(df, COUNTRY_LANGUAGE_COLUMNS, source)
    out = df.select(
        pl.col("country").cast(pl.String).str.strip_chars(),
        pl.col("language").cast(pl.String).str.strip_chars().str.to_lowercase(),
    ).unique(maintain_order=True)
    dup = out.filter(pl.col("country").is_duplicated())
    if dup.height:
        raise InputError(source, f"country '{dup['country'][0]}' has more than one language")
    return out


# ----------------------------------------------------------------------------------------------
# Generic statistics: Spearman (row-wise, with missing values) and pair correlations
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Analysis data: cells of responses grouped by topic, ground truth as vectors over topics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The responses of one model in one language, sorted by topic."""

    model: str
    family: str
    language: str
    topic: IntArray  # index into AnalysisData.topics, per response (sorted)
    value: FloatArray  # polarity per response
    counts: IntArray  # responses per topic (length K)
    starts: IntArray  # first row of each topic (length K)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.family, self.language)

    @property
    def n(self) -> int:
        return int(self.value.size)


@dataclass
class AnalysisData:
    """Responses by cell and ground truth by (level, group), over one shared topic list."""

    topics: list[str]
    cells: list[Cell]
    ground_truth: dict[tuple[str, str], FloatArray]
    country_languages: dict[str, str] = field(default_factory=dict)

    def groups(self, cell: Cell, levels: Sequence[str] = LEVELS) -> list[tuple[str, str]]:
        """(level, group) pairs a cell is compared with: every group of the levels, except that
        the released merged ground truth only applies to its own language."""
        out = []
        for level, group in sorted(self.ground_truth):
            if level not in levels:
                continue
            if level == "merged" and group != cell.language:
                continue
            out.append((level, group))
        return out

    def local_countries(self, language: str) -> list[str]:
        """Countries whose language is `language` and that have ground truth."""
        have = {g for (lvl, g) in self.ground_truth if lvl == "country"}
        return sorted(
            c for c, lang in self.country_languages.items() if lang == language and c in have
        )


def build_analysis_data(
    responses: pl.DataFrame,
    ground_truth: pl.DataFrame,
    country_languages: pl.DataFrame | None = None,
) -> AnalysisData:
    """Arrange canonical tables for the bootstrap engine (cells sorted by model, language)."""
    topics = sorted(responses["question_key"].unique().to_list())
    tindex = {t: i for i, t in enumerate(topics)}
    k = len(topics)
    cells: list[Cell] = []
    for (model, family, language), part in sorted(
        responses.group_by(["model", "family", "language"]), key=lambda kv: kv[0]
    ):
        part = part.with_columns(
            pl.col("question_key").replace_strict(tindex, return_dtype=pl.Int64).alias("_t")
        ).sort(["_t", "response_id"])
        t = part["_t"].to_numpy().astype(np.int64)
        counts = np.bincount(t, minlength=k).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        cells.append(
            Cell(
                str(model),
                str(family),
                str(language),
                t,
                part["pro_score"].to_numpy().astype(np.float64),
                counts,
                starts,
            )
        )
    gt: dict[tuple[str, str], FloatArray] = {}
    for (level, group), part in ground_truth.group_by(["level", "group"]):
        vec = np.full(k, np.nan)
        for q, p in zip(part["question_key"].to_list(), part["polarity"].to_list(), strict=True):
            if q in tindex:
                vec[tindex[q]] = p
        if np.isfinite(vec).any():
            gt[(str(level), str(group))] = vec
    cl = (
        {}
        if country_languages is None
        else dict(
            zip(
                country_languages["country"].to_list(),
                country_languages["language"].to_list(),
                strict=True,
            )
        )
    )
    return AnalysisData(topics, cells, gt, cl)


def load_analysis_data(
    responses_path: str | os.PathLike[str],
    ground_truth_path: str | os.PathLike[str],
    country_languages_path: str | os.PathLike[str] | None = None,
) -> AnalysisData:
    """:func:`build_analysis_data` of the canonical tables the alignment_inputs rule writes."""
    responses = check_responses(pl.read_parquet(responses_path), responses_path)
    gt = check_ground_truth(pl.read_parquet(ground_truth_path), ground_truth_path)
    cl = None
    if country_languages_path is not None:
        cl = check_country_languages(
            pl.read_parquet(country_languages_path), country_languages_path
        )
    return build_analysis_data(responses, gt, cl)


# ----------------------------------------------------------------------------------------------
# The bootstrap engine
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """One (re)sample of a cell: rows of the cell, the cluster (topic occurrence) of each row,
    and the topic of each cluster."""

    rows: IntArray
    cluster: IntArray
    cluster_topic: IntArray


def full_draw(cell: Cell) -> Draw:
    """The cell as observed: every response once, clusters = topics."""
    present = np.flatnonzero(cell.counts > 0)
    remap = np.full(cell.counts.size, -1, dtype=np.int64)
    remap[present] = np.arange(present.size)
    return Draw(np.arange(cell.n, dtype=np.int64), remap[cell.topic], present.astype(np.int64))


def cluster_draw(cell: Cell, topic_draw: IntArray) -> Draw:
    """All responses of each drawn topic occurrence (topics the cell never answered drop out).

    Only topics are resampled: a topic's responses already carry the within-topic noise, and
    resampling them again would count it twice."""
    counts = cell.counts[topic_draw]
    keep = counts > 0
    occ_topic = topic_draw[keep]
    occ_counts = counts[keep]
    starts = cell.starts[occ_topic]
    total = int(occ_counts.sum())
    first = np.repeat(starts, occ_counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(
        np.cumsum(occ_counts) - occ_counts, occ_counts
    )
    rows = first + within
    cluster = np.repeat(np.arange(occ_topic.size, dtype=np.int64), occ_counts)
    return Draw(rows, cluster, occ_topic.astype(np.int64))


def response_draw(cell: Cell, size: int, rng: np.random.Generator) -> Draw:
    """`size` responses of the cell drawn with replacement; clusters = topics present."""
    rows = np.sort(rng.integers(0, cell.n, size=size)).astype(np.int64)
    t = cell.topic[rows]
    present, cluster = np.unique(t, return_inverse=True)
    return Draw(rows, cluster.astype(np.int64), present.astype(np.int64))


@dataclass
class ReplicateResult:
    """Alignment and consistency of every cell in every replicate (replicate -1 = observed)."""

    alignment: (
        pl.DataFrame
    )  # replicate, model, family, language, level, group, unit, alignment, n_points
    consistency: (
        pl.DataFrame
    )  # replicate, model, family, language, consistency, consistency_released, n_pairs


def _topic_means(cell: Cell, draw: Draw) -> FloatArray:
    n_clusters = draw.cluster_topic.size
    sums = np.bincount(draw.cluster, weights=cell.value[draw.rows], minlength=n_clusters)
    counts = np.bincount(draw.cluster, minlength=n_clusters)
    return sums / counts


def released_copies(data: AnalysisData, level: str) -> IntArray:
    """Per topic, how many ground-truth groups of `level` have it: the released analysis joined
    each response to every group before pairing responses, so each response appeared that many
    times (0: the join dropped the topic)."""
    k = len(data.topics)
    copies = np.zeros(k, dtype=np.int64)
    for (lvl, _), vec in data.ground_truth.items():
        if lvl == level:
            copies += np.isfinite(vec).astype(np.int64)
    return copies


def _pad(rows: list[FloatArray]) -> FloatArray:
    width = max((r.size for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), np.nan)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def _pad_int(rows: list[IntArray]) -> IntArray:
    width = max((r.size for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def replicates(
    data: AnalysisData,
    scheme: str,
    rounds: int,
    seed: int,
    *,
    resample_size: int | None = None,
    levels: Sequence[str] = LEVELS,
    units: Sequence[str] = UNITS,
    released_level: str | None = "language",
    include_observed: bool = True,
    consistency: bool = True,
) -> ReplicateResult:
    """Alignment (per cell × level × group × unit) and consistency (per cell) in `rounds`
    bootstrap replicates of `scheme` ('cluster' or 'responses'), plus the observed values as
    replicate -1 when `include_observed`.

    Consistency pairs responses to the same topic occurrence without self-pairs and without
    bootstrap duplicates ('consistency'); 'consistency_released' is the released analysis's
    pairing (duplicates pair with each other, each response repeated once per ground-truth group
    of `released_level`; topics without ground truth there left out), NaN when that level is None.
    Seeded: the same data, scheme, rounds, size and seed give the same numbers. With
    ``consistency`` off the consistency columns are NaN (and nothing is paired).
    """
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown bootstrap scheme '{scheme}' (expected one of {', '.join(SCHEMES)})"
        )
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        raise ValueError(f"unknown alignment unit(s) {unknown} (expected {', '.join(UNITS)})")
    if rounds < 0:
        raise ValueError("rounds must be ≥ 0")
    rng = np.random.default_rng(seed)
    k = len(data.topics)
    topic_draws = rng.integers(0, k, size=(rounds, k)) if scheme == "cluster" and rounds else None
    copies = released_copies(data, released_level) if released_level else None

    al_keys: list[tuple[str, str, str, str, str, str]] = []
    al_chunks: list[tuple[IntArray, FloatArray, IntArray]] = []
    co_rows: list[dict[str, object]] = []
    for cell in data.cells:
        cell_rng = np.random.default_rng([seed, *_stable_ints(cell.key)])
        draws: list[tuple[int, Draw]] = []
        if include_observed:
            draws.append((-1, full_draw(cell)))
        for b in range(rounds):
            if scheme == "cluster":
                assert topic_draws is not None
                draws.append((b, cluster_draw(cell, topic_draws[b])))
            else:
                draws.append((b, response_draw(cell, resample_size or cell.n, cell_rng)))
        reps = np.asarray([b for b, _ in draws], dtype=np.int64)
        # Per unit: the model's values per point (padded matrix) and each point's topic.
        points: dict[str, tuple[FloatArray, IntArray]] = {}
        if "topic" in units:
            points["topic"] = (
                _pad([_topic_means(cell, d) for _, d in draws]),
                _pad_int([d.cluster_topic for _, d in draws]),
            )
        if "response" in units:
            points["response"] = (
                _pad([cell.value[d.rows] for _, d in draws]),
                _pad_int([cell.topic[d.rows] for _, d in draws]),
            )
        for unit, (x, topic_idx) in points.items():
            valid_x = np.isfinite(x) & (topic_idx >= 0)
            safe_idx = np.where(topic_idx >= 0, topic_idx, 0)
            x_ranks: dict[bytes, FloatArray] = {}  # groups that share topics share the x ranks
            for level, group in data.groups(cell, levels):
                gt = data.ground_truth[(level, group)]
                g = np.where(valid_x, gt[safe_idx], np.nan)
                mask = valid_x & np.isfinite(g)
                pattern = np.isfinite(gt).tobytes()
                if pattern not in x_ranks:
                    x_ranks[pattern] = masked_ranks(x, mask)
                rho = pearson_rows(x_ranks[pattern], masked_ranks(g, mask))
                al_keys.append((cell.model, cell.family, cell.language, level, group, unit))
                al_chunks.append((reps, rho, mask.sum(axis=1).astype(np.int64)))
        for b, d in draws:
            if not consistency:
                co_rows.append(
                    {
                        "replicate": b,
                        "model": cell.model,
                        "family": cell.family,
                        "language": cell.language,
                        "consistency": float("nan"),
                        "consistency_released": float("nan"),
                        "n_pairs": 0,
                    }
                )
                continue
            vals = cell.value[d.rows]
            r, n_pairs = pair_correlation(d.cluster, vals, item=d.rows, exclude_same_item=True)
            r_rel = float("nan")
            if copies is not None:
                w = copies[cell.topic[d.rows]].astype(np.float64)
                keep = w > 0
                r_rel, _ = released_pair_spearman(cell.topic[d.rows][keep], vals[keep], w[keep])
            co_rows.append(
                {
                    "replicate": b,
                    "model": cell.model,
                    "family": cell.family,
                    "language": cell.language,
                    "consistency": r,
                    "consistency_released": r_rel,
                    "n_pairs": n_pairs,
                }
            )
    key_cols = ["model", "family", "language", "level", "group", "unit"]
    keys = pl.DataFrame(
        al_keys, schema=dict.fromkeys(key_cols, pl.String), orient="row"
    ).with_row_index("_chunk")
    lengths = [c[0].size for c in al_chunks]
    values = pl.DataFrame(
        {
            "_chunk": np.repeat(np.arange(len(al_chunks), dtype=np.uint32), lengths),
            "replicate": np.concatenate([c[0] for c in al_chunks])
            if al_chunks
            else np.zeros(0, np.int64),
            "alignment": np.concatenate([c[1] for c in al_chunks]) if al_chunks else np.zeros(0),
            "n_points": np.concatenate([c[2] for c in al_chunks])
            if al_chunks
            else np.zeros(0, np.int64),
        }
    )
    alignment = (
        values.join(keys, on="_chunk", how="left")
        .select("replicate", *key_cols, "alignment", "n_points")
        .with_columns(pl.col("alignment").fill_nan(None))
    )
    consistency = pl.DataFrame(
        co_rows,
        schema=REPLICATE_CONSISTENCY_SCHEMA,
    )
    return ReplicateResult(alignment, consistency)


def _stable_ints(key: Sequence[str]) -> list[int]:
    """Stable 32-bit integers from strings (seed material that does not depend on hash salts)."""
    out = []
    for s in key:
        h = 2166136261
        for byte in s.encode("utf-8"):
            h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
        out.append(h)
    return out


# ----------------------------------------------------------------------------------------------
# Stage 7: alignment table with bootstrap intervals
# ----------------------------------------------------------------------------------------------


def alignment_table(
    data: AnalysisData,
    *,
    scheme: str,
    rounds: int,
    seed: int,
    resample_size: int | None = None,
    units: Sequence[str] = UNITS,
    alpha: float = 0.05,
    min_responses: int = 0,
) -> pl.DataFrame:
    """Observed alignment per model × language × level × group × unit with its percentile
    bootstrap interval: columns model, family, language, level, group, unit, alignment,
    ci_low, ci_high, se, n_points, n_responses, low_n, n_boot, n_boot_valid, scheme.

    ``low_n`` flags cells with fewer than `min_responses` usable responses (the released data
    keep 38 of 300 for gemma-2-2b-it in Danish): their estimates are reported, not dropped."""
    res = replicates(
        data, scheme, rounds, seed, resample_size=resample_size, units=units, released_level=None
    )
    keys = ["model", "family", "language", "level", "group", "unit"]
    observed = res.alignment.filter(pl.col("replicate") == -1).drop("replicate")
    boot = res.alignment.filter(pl.col("replicate") >= 0)
    rows = []
    for key, part in boot.group_by(keys, maintain_order=True):
        low, high, sd, n_valid = percentile_interval(part["alignment"].to_numpy(), alpha)
        rows.append(
            dict(zip(keys, key, strict=True))
            | {"ci_low": low, "ci_high": high, "se": sd, "n_boot_valid": n_valid}
        )
    ci = pl.DataFrame(
        rows,
        schema={
            **dict.fromkeys(keys, pl.String),
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "se": pl.Float64,
            "n_boot_valid": pl.Int64,
        },
    )
    sizes = pl.DataFrame(
        {
            "model": [c.model for c in data.cells],
            "language": [c.language for c in data.cells],
            "n_responses": [c.n for c in data.cells],
        }
    )
    out = (
        observed.join(ci, on=keys, how="left")
        if rounds
        else observed.with_columns(
            pl.lit(None, pl.Float64).alias("ci_low"),
            pl.lit(None, pl.Float64).alias("ci_high"),
            pl.lit(None, pl.Float64).alias("se"),
            pl.lit(0, pl.Int64).alias("n_boot_valid"),
        )
    )
    return (
        out.join(sizes, on=["model", "language"], how="left")
        .with_columns(pl.lit(rounds, pl.Int64).alias("n_boot"), pl.lit(scheme).alias("scheme"))
        .select(
            *keys,
            "alignment",
            "ci_low",
            "ci_high",
            "se",
            "n_points",
            "n_responses",
            (pl.col("n_responses") < min_responses).alias("low_n"),
            "n_boot",
            "n_boot_valid",
            "scheme",
        )
        .sort(keys)
    )


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


def summarise_cells(data: AnalysisData) -> pl.DataFrame:
    """Responses and topics per cell (model, family, language, n_responses, n_topics)."""
    return pl.DataFrame(
        [
            {
                "model": c.model,
                "family": c.family,
                "language": c.language,
                "n_responses": c.n,
                "n_topics": int((c.counts > 0).sum()),
            }
            for c in data.cells
        ],
        schema={
            "model": pl.String,
            "family": pl.String,
            "language": pl.String,
            "n_responses": pl.Int64,
            "n_topics": pl.Int64,
        },
    )


def iter_groups(mapping: Mapping[tuple[str, str], FloatArray], level: str) -> Iterator[str]:
    """Groups of one level that have ground truth."""
    return (g for (lvl, g) in sorted(mapping) if lvl == level)


def is_finite_number(x: object) -> bool:
    """Whether `x` is a finite float/int."""
    return isinstance(x, int | float) and math.isfinite(float(x))
