"""Alignment replicates: the bootstrap draws (full, topic clusters, responses), the replicate
alignment and consistency tables, and the alignment table with intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from polyculture.wvs.alignment.correlations import (
    masked_ranks,
    pair_correlation,
    pearson_rows,
    percentile_interval,
    released_pair_spearman,
)
from polyculture.wvs.alignment.inputs import LEVELS, AnalysisData, Cell, FloatArray, IntArray

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


UNITS = ("topic", "response")


SCHEMES = ("cluster", "responses")


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
