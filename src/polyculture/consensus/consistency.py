"""Intra-language consistency of sampled answers (paper eq. 3) and per-sample centrality (eq. 4).

For one question and one side (English or local) with n usable samples e_1..e_n (embeddings):

    C = 2 / (n (n-1)) * sum_{i<j} cos(e_i, e_j)          (mean over the n(n-1)/2 distinct pairs)
    s_i = 1 / (n-1) * sum_{j != i} cos(e_i, e_j)           (mean cosine to the other n-1 samples)

Both come from one Gram matrix per question: a block of questions with the same n is stacked
into an array [Q, n, D] and multiplied in one batched product (einsum 'qid,qjd->qij'); the
diagonal (self-similarity) is removed from the row sums. No Python loop runs over pairs.

Defined edge cases:
- empty samples (blank text) are removed before embedding and counted (stage embed_responses);
  the remaining samples keep their original sample index;
- a side with fewer than 2 usable samples has no pair: the question is dropped and counted
  with reason 'too_few_samples_<side>' (`min_samples` is at least 2);
- duplicate samples are kept: identical answers are real agreement and count as cosine 1;
- cosine divides by the norms (embedders that already normalise are unaffected); an all-zero
  embedding is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import InputError

SIDES = ("en", "local")


@dataclass(frozen=True)
class BlockScores:
    """Consistency C per question [Q] and mean similarity per sample [Q, n] of one block."""

    consistency: np.ndarray
    sample_mean: np.ndarray


def block_scores(emb: np.ndarray) -> BlockScores:
    """Consistency and per-sample mean similarity for a block [Q, n, D] of n >= 2 samples each.

    One batched matrix product G = E E^T per question (float32 products, float64 from there):
    the diagonal of G holds the squared norms, so cos = G_ij / (|e_i| |e_j|) needs no second
    pass over the vectors; row sums minus the diagonal give each sample's sum over the other
    n-1 samples, and their total counts every distinct pair twice.
    """
    if emb.ndim != 3:
        raise ValueError(f"expected an array [questions, samples, dim], got shape {emb.shape}")
    q, n, _ = emb.shape
    if n < 2:
        raise ValueError(f"consistency needs at least 2 samples per side, got {n}")
    if q == 0:
        return BlockScores(np.zeros(0), np.zeros((0, n)))
    e = emb if emb.dtype in (np.float32, np.float64) else emb.astype(np.float32)
    gram = np.matmul(e, np.swapaxes(e, 1, 2)).astype(np.float64, copy=False)
    sq = np.diagonal(gram, axis1=1, axis2=2)
    if np.any(sq <= 0) or not np.all(np.isfinite(sq)):
        raise InputError(
            "embeddings", "an embedding is all zeros or not finite; cosine is undefined"
        )
    norms = np.sqrt(sq)
    cos = gram / (norms[:, :, None] * norms[:, None, :])
    row_sums = cos.sum(axis=2) - np.diagonal(cos, axis1=1, axis2=2)
    sample_mean = row_sums / (n - 1)
    consistency = row_sums.sum(axis=1) / (n * (n - 1))
    return BlockScores(consistency, sample_mean)


def brute_force_scores(emb: np.ndarray) -> tuple[float, np.ndarray]:
    """Reference implementation for one question [n, D]: an explicit double loop over pairs."""
    n = emb.shape[0]
    e = [v / np.linalg.norm(v) for v in np.asarray(emb, dtype=np.float64)]
    pair_sum = 0.0
    per = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            c = float(np.dot(e[i], e[j]))
            per[i] += c
            if i < j:
                pair_sum += c
    return pair_sum / (n * (n - 1) / 2), per / (n - 1)


def embedding_matrix(col: pl.Series) -> np.ndarray:
    """An embedding column (fixed-size array or list of floats) as a float32 matrix [rows, D]."""
    if col.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(col.dtype, pl.Array):
        return np.asarray(col.to_numpy(), dtype=np.float32)
    if not isinstance(col.dtype, pl.List):
        raise InputError(
            "embeddings", f"column 'embedding' has type {col.dtype}, expected a list of floats"
        )
    lengths = col.list.len()
    if lengths.null_count() or lengths.min() != lengths.max() or lengths.min() == 0:
        raise InputError("embeddings", "embeddings have differing or zero lengths")
    dim = int(lengths[0])
    return col.explode().to_numpy().astype(np.float32, copy=False).reshape(-1, dim)


def score_embeddings(
    emb: pl.DataFrame,
    *,
    min_samples: int = 2,
    block_size: int = 2048,
) -> tuple[pl.DataFrame, pl.DataFrame, DropCounter]:
    """Consistency per (question, side) and mean similarity per sample, from an embeddings table.

    `emb` has columns question_id, side ('en'|'local'), sample (int), embedding (floats).
    Returns (consistency table: question_id, side, n_samples, consistency; sample table:
    question_id, side, sample, mean_similarity; drop counter). A question whose side has fewer
    than `min_samples` usable samples is dropped entirely (both sides), counted with reason
    'too_few_samples_<side>' (English checked first). Rows are sorted once; each (question,
    side) is a contiguous run, and runs of equal length n are gathered into [Q, n, D] blocks of
    at most `block_size` questions for `block_scores`.
    """
    if min_samples < 2:
        raise ValueError("min_samples must be at least 2: consistency needs a pair")
    drops = DropCounter(stage="score_consistency")
    cons_schema = {
        "question_id": pl.String,
        "side": pl.String,
        "n_samples": pl.Int64,
        "consistency": pl.Float64,
    }
    samp_schema = {
        "question_id": pl.String,
        "side": pl.String,
        "sample": pl.Int64,
        "mean_similarity": pl.Float64,
    }
    if emb.height == 0:
        return pl.DataFrame(schema=cons_schema), pl.DataFrame(schema=samp_schema), drops
    bad_sides = set(emb["side"].unique().to_list()) - set(SIDES)
    if bad_sides:
        raise InputError("embeddings", f"unknown side(s) {sorted(bad_sides)}; expected {SIDES}")
    dup = emb.select("question_id", "side", "sample").is_duplicated()
    if dup.any():
        raise InputError("embeddings", "a (question_id, side, sample) appears twice")
    runs = emb.group_by("question_id", "side").len()
    questions = emb["question_id"].unique().sort().to_list()
    drops.seen(len(questions))
    wide = runs.pivot(on="side", index="question_id", values="len")
    for side in SIDES:
        if side not in wide.columns:
            wide = wide.with_columns(pl.lit(0, dtype=pl.UInt32).alias(side))
    wide = wide.fill_null(0)
    short_en = wide.filter(pl.col("en") < min_samples)
    short_local = wide.filter((pl.col("en") >= min_samples) & (pl.col("local") < min_samples))
    if short_en.height:
        drops.drop("too_few_samples_en", short_en.height)
    if short_local.height:
        drops.drop("too_few_samples_local", short_local.height)
    keep = wide.filter((pl.col("en") >= min_samples) & (pl.col("local") >= min_samples))
    keys = (
        emb.select("question_id", "side", "sample")
        .with_row_index("_row")
        .filter(pl.col("question_id").is_in(keep["question_id"].implode()))
        .sort("question_id", "side", "sample")
    )
    if keys.height == 0:
        return pl.DataFrame(schema=cons_schema), pl.DataFrame(schema=samp_schema), drops
    full = embedding_matrix(emb["embedding"])
    order = keys["_row"].to_numpy()
    # one gather into (question, side, sample) order, skipped where rows already are in it
    matrix = full if np.array_equal(order, np.arange(full.shape[0])) else full[order]
    starts_mask = (
        (keys["question_id"] != keys["question_id"].shift(1))
        | (keys["side"] != keys["side"].shift(1))
    ).fill_null(True)
    starts = np.flatnonzero(starts_mask.to_numpy())
    lengths = np.diff(np.append(starts, keys.height))
    run_q = keys["question_id"].gather(starts).to_numpy()
    run_s = keys["side"].gather(starts).to_numpy()
    sample_idx = keys["sample"].to_numpy()
    cons_parts: list[pl.DataFrame] = []
    samp_parts: list[pl.DataFrame] = []
    uniform = bool(np.all(lengths == lengths[0]))
    for n in np.unique(lengths):
        runs_n = np.flatnonzero(lengths == n)
        for b in range(0, runs_n.size, block_size):
            sel = runs_n[b : b + block_size]
            if uniform:  # every run has n rows: a block is a contiguous view, no copy
                rows = (starts[sel[0]] + np.arange(sel.size * n)).reshape(sel.size, n)
                block = matrix[rows[0, 0] : rows[-1, -1] + 1].reshape(sel.size, n, -1)
            else:
                rows = starts[sel, None] + np.arange(n)[None, :]
                block = matrix[rows]
            scores = block_scores(block)
            cons_parts.append(
                pl.DataFrame(
                    {
                        "question_id": run_q[sel],
                        "side": run_s[sel],
                        "n_samples": np.full(sel.size, n, dtype=np.int64),
                        "consistency": scores.consistency,
                    },
                    schema=cons_schema,
                )
            )
            samp_parts.append(
                pl.DataFrame(
                    {
                        "question_id": np.repeat(run_q[sel], n),
                        "side": np.repeat(run_s[sel], n),
                        "sample": sample_idx[rows].reshape(-1).astype(np.int64),
                        "mean_similarity": scores.sample_mean.reshape(-1),
                    },
                    schema=samp_schema,
                )
            )
    cons = pl.concat(cons_parts).sort("question_id", "side")
    samp = pl.concat(samp_parts).sort("question_id", "side", "sample")
    return cons, samp, drops
