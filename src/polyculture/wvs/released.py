"""The released analysis's statistics, exactly (jhrystrom/multicultural-alignment @ f550348,
``scripts/analyse_hypotheses.py``), beside which the project's sound statistics are reported.

The released code joins every judged response to the ground truth of one level (``join_all_gt``:
an inner join on the topic, so a response appears once per group of that level that has its
topic — four times for the per-language file — and topics without ground truth there fall out).
One bootstrap round (``polars_sample_and_calculate``) draws *rows of that joined table* with
replacement (as many as it has, all models and languages together) and computes on the draw:

- alignment per model × group × language: Spearman's correlation between the responses'
  polarities and the group's ground truth over the drawn rows of that group (unit 'response');
- self-consistency per model × language (``calculate_consistency``): the drawn table numbered
  row by row, self-joined on topic × model × language, pairs of a row with itself dropped (so
  copies of one response — from the join or from the draw — pair with each other), Spearman's
  correlation of the two polarity columns, divided by (1 − 0.045).

:func:`released_consistency` is the no-resample value of that statistic (the joined table as is),
:func:`released_replicates` the bootstrap distribution of both, drawn the released way. Both are
computed in closed form from per-topic sums (:func:`polyculture.wvs.alignment.released_pair_spearman`)
and equal, to rounding, what the self-join computes (tests/test_alignment_released.py checks
that on the released responses).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from polyculture.wvs.alignment import (
    RELEASED_ERROR_RATE,
    REPLICATE_ALIGNMENT_SCHEMA,
    REPLICATE_CONSISTENCY_SCHEMA,
    AnalysisData,
    ReplicateResult,
    _stable_ints,
    released_copies,
    released_pair_spearman,
    spearman_rows,
)

RELEASED_LEVELS = ("language", "country", "global")


def _check_level(data: AnalysisData, level: str) -> None:
    if level not in RELEASED_LEVELS:
        raise ValueError(
            f"the released analysis joins to level 'language', 'country' or 'global', not '{level}'"
        )
    if not any(lvl == level for lvl, _ in data.ground_truth):
        raise ValueError(f"no ground truth at level '{level}' to join the responses to")


def released_consistency(
    data: AnalysisData, level: str = "language", error_rate: float = RELEASED_ERROR_RATE
) -> pl.DataFrame:
    """The released self-consistency of every model × language on all responses (no resample):
    columns model, family, language, consistency_released, n_pairs, n_joined_rows."""
    _check_level(data, level)
    copies = released_copies(data, level)
    rows = []
    for cell in data.cells:
        w = copies[cell.topic].astype(np.float64)
        r, n_pairs = released_pair_spearman(cell.topic, cell.value, w, error_rate)
        rows.append(
            {
                "model": cell.model,
                "family": cell.family,
                "language": cell.language,
                "consistency_released": r,
                "n_pairs": n_pairs,
                "n_joined_rows": int(w.sum()),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "family": pl.String,
            "language": pl.String,
            "consistency_released": pl.Float64,
            "n_pairs": pl.Int64,
            "n_joined_rows": pl.Int64,
        },
    ).sort("model", "language")


def released_replicates(
    data: AnalysisData,
    level: str,
    rounds: int,
    seed: int,
    *,
    consistency: bool = True,
    error_rate: float = RELEASED_ERROR_RATE,
) -> ReplicateResult:
    """`rounds` bootstrap replicates drawn as the released analysis drew them: rows of the table
    of every response joined to every group of `level` (all cells together), with replacement,
    as many as the table has. Per replicate: alignment (unit 'response') per cell × group of
    `level`, and the released self-consistency per cell (``consistency_released``;
    ``consistency`` is NaN: the sound pairing is not defined on joined rows).

    The released rounds were unseeded; these are seeded (`seed`), so the same call gives the
    same numbers. Replicates are numbered 0 … rounds − 1 (no observed row)."""
    _check_level(data, level)
    if rounds < 1:
        raise ValueError("rounds must be ≥ 1")
    groups = sorted(g for lvl, g in data.ground_truth if lvl == level)
    gt = np.vstack([data.ground_truth[(level, g)] for g in groups])  # groups × topics
    # The joined table: per cell, per response, one row per group that has the response's topic.
    cell_rows: list[tuple[np.ndarray, np.ndarray]] = []  # (response index, group index) per row
    for cell in data.cells:
        has = np.isfinite(gt[:, cell.topic])  # groups × responses
        g_idx, r_idx = np.nonzero(has)
        order = np.lexsort((g_idx, r_idx))  # response-major, as the join emits them
        cell_rows.append((r_idx[order].astype(np.int64), g_idx[order].astype(np.int64)))
    sizes = np.asarray([r.size for r, _ in cell_rows], dtype=np.int64)
    total = int(sizes.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rng = np.random.default_rng([seed, *_stable_ints((level, "released"))])
    counts = np.zeros((rounds, total), dtype=np.int64)
    for b in range(rounds):
        counts[b] = np.bincount(rng.integers(0, total, size=total), minlength=total)

    al_rows: list[dict[str, object]] = []
    co_rows: list[dict[str, object]] = []
    for ci, cell in enumerate(data.cells):
        r_idx, g_idx = cell_rows[ci]
        c = counts[:, offsets[ci] : offsets[ci + 1]]  # rounds × joined rows of the cell
        vals = cell.value[r_idx]
        topics = cell.topic[r_idx]
        for gi, group in enumerate(groups):
            sel = g_idx == gi
            if not sel.any():
                continue
            cs = c[:, sel]
            width = int(cs.sum(axis=1).max()) if cs.size else 0
            x = np.full((rounds, max(width, 1)), np.nan)
            y = np.full((rounds, max(width, 1)), np.nan)
            xv, yv = vals[sel], gt[gi, topics[sel]]
            for b in range(rounds):
                n_b = int(cs[b].sum())
                x[b, :n_b] = np.repeat(xv, cs[b])
                y[b, :n_b] = np.repeat(yv, cs[b])
            rho = spearman_rows(x, y)
            n_points = np.isfinite(x).sum(axis=1)
            for b in range(rounds):
                al_rows.append(
                    {
                        "replicate": b,
                        "model": cell.model,
                        "family": cell.family,
                        "language": cell.language,
                        "level": level,
                        "group": group,
                        "unit": "response",
                        "alignment": float(rho[b]) if np.isfinite(rho[b]) else None,
                        "n_points": int(n_points[b]),
                    }
                )
        for b in range(rounds):
            r_rel, n_pairs = (
                released_pair_spearman(topics, vals, c[b].astype(np.float64), error_rate)
                if consistency
                else (float("nan"), 0)
            )
            co_rows.append(
                {
                    "replicate": b,
                    "model": cell.model,
                    "family": cell.family,
                    "language": cell.language,
                    "consistency": float("nan"),
                    "consistency_released": r_rel,
                    "n_pairs": n_pairs,
                }
            )
    alignment = pl.DataFrame(
        al_rows,
        schema=REPLICATE_ALIGNMENT_SCHEMA,
    )
    cons = pl.DataFrame(
        co_rows,
        schema=REPLICATE_CONSISTENCY_SCHEMA,
    )
    return ReplicateResult(alignment, cons)
