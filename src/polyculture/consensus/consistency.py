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

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

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


KEY_COLUMNS = ("question_id", "side", "sample")
CONSISTENCY_SCHEMA = {
    "question_id": pl.String,
    "side": pl.String,
    "n_samples": pl.Int64,
    "consistency": pl.Float64,
}
SAMPLE_SCHEMA = {
    "question_id": pl.String,
    "side": pl.String,
    "sample": pl.Int64,
    "mean_similarity": pl.Float64,
}
#: rows of embeddings read at a time by `score_embedding_files` (our choice: 16,384 rows of
#: 1,024 float32 values are 64 MiB, small next to the 4 GB goal at 100,000 questions)
BATCH_ROWS = 16384


def _empty_scores() -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.DataFrame(schema=CONSISTENCY_SCHEMA), pl.DataFrame(schema=SAMPLE_SCHEMA)


def kept_sorted_keys(keys: pl.DataFrame, min_samples: int) -> tuple[pl.DataFrame, DropCounter]:
    """The rows to score, sorted by (question_id, side, sample), and the drop counter.

    `keys` holds question_id, side, sample and a row index `_row` (kept in the result). Checks
    the sides and duplicate rows; a question whose side has fewer than `min_samples` rows is
    dropped (both sides), counted as 'too_few_samples_<side>' (English checked first).
    """
    if min_samples < 2:
        raise ValueError("min_samples must be at least 2: consistency needs a pair")
    drops = DropCounter(stage="score_consistency")
    if keys.height == 0:
        return keys, drops
    bad_sides = set(keys["side"].unique().to_list()) - set(SIDES)
    if bad_sides:
        raise InputError("embeddings", f"unknown side(s) {sorted(bad_sides)}; expected {SIDES}")
    dup = keys.select(KEY_COLUMNS).is_duplicated()
    if dup.any():
        raise InputError("embeddings", "a (question_id, side, sample) appears twice")
    runs = keys.group_by("question_id", "side").len()
    drops.seen(keys["question_id"].n_unique())
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
    kept = keys.filter(pl.col("question_id").is_in(keep["question_id"].implode())).sort(
        "question_id", "side", "sample"
    )
    return kept, drops


def _run_starts(keys: pl.DataFrame) -> np.ndarray:
    """Row numbers where a (question_id, side) run begins in keys sorted by those columns."""
    mask = (
        (keys["question_id"] != keys["question_id"].shift(1))
        | (keys["side"] != keys["side"].shift(1))
    ).fill_null(True)
    return np.flatnonzero(mask.to_numpy())


def score_sorted_runs(
    keys: pl.DataFrame, matrix: np.ndarray, block_size: int
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Consistency and sample-similarity parts of complete (question, side) runs.

    `keys` (question_id, side, sample) is sorted by those columns and `matrix` [rows, D] holds
    the embedding of each of its rows in the same order. Runs of equal length n are gathered
    into [Q, n, D] blocks of at most `block_size` questions for `block_scores`; each question's
    figures depend only on its own vectors, not on the block it is scored in.
    """
    starts = _run_starts(keys)
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
                    schema=CONSISTENCY_SCHEMA,
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
                    schema=SAMPLE_SCHEMA,
                )
            )
    return cons_parts, samp_parts


def _collect(
    cons_parts: list[pl.DataFrame], samp_parts: list[pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if not cons_parts:
        return _empty_scores()
    cons = pl.concat(cons_parts).sort("question_id", "side")
    samp = pl.concat(samp_parts).sort("question_id", "side", "sample")
    return cons, samp


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
    'too_few_samples_<side>' (English checked first). The whole table is in memory; the
    workflow's shards are scored with bounded memory by `score_embedding_files`, with the same
    result.
    """
    keys, drops = kept_sorted_keys(emb.select(KEY_COLUMNS).with_row_index("_row"), min_samples)
    if keys.height == 0:
        return *_empty_scores(), drops
    full = embedding_matrix(emb["embedding"])
    order = keys["_row"].to_numpy()
    # one gather into (question, side, sample) order, skipped where rows already are in it
    matrix = full if np.array_equal(order, np.arange(full.shape[0])) else full[order]
    return *_collect(*score_sorted_runs(keys, matrix, block_size)), drops


def _check_parquet(path: Path) -> None:
    """An embeddings shard must be a readable Parquet file with the key and embedding columns."""
    if not path.is_file():
        raise InputError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"could not be read as a Parquet table: {exc}") from exc
    missing = [c for c in (*KEY_COLUMNS, "embedding") if c not in names]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(repr(c) for c in missing)}; expected columns: "
            f"{', '.join((*KEY_COLUMNS, 'embedding'))}",
        )


def read_keys(paths: Sequence[str | os.PathLike[str]]) -> pl.DataFrame:
    """question_id, side, sample of every row of the shards, stacked in order, with `_row` (the
    row's number in that stacking) — every column but the embeddings."""
    parts = []
    for path in map(Path, paths):
        _check_parquet(path)
        parts.append(pl.read_parquet(path, columns=list(KEY_COLUMNS)))
    nonempty = [p for p in parts if p.height]
    keys = pl.concat(nonempty, how="vertical_relaxed") if nonempty else parts[0]
    return keys.with_row_index("_row")


def embedding_batches(path: str | os.PathLike[str], batch_rows: int) -> Iterator[np.ndarray]:
    """The embeddings of a Parquet shard, `batch_rows` rows at a time, as float32 [rows, D]."""
    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_rows, columns=["embedding"]):
            yield embedding_matrix(pl.Series("embedding", batch.column(0)))


def score_embedding_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    min_samples: int = 2,
    block_size: int = 2048,
    batch_rows: int = BATCH_ROWS,
) -> tuple[pl.DataFrame, pl.DataFrame, DropCounter]:
    """`score_embeddings` of the stacked Parquet shards `paths`, holding only `batch_rows`
    embeddings plus the runs not yet complete in memory, with the same result.

    First pass: the keys of every shard (no embeddings) give the drops and each kept row's
    place in (question_id, side, sample) order. Second pass: the embeddings in batches; a
    (question, side) run is scored as soon as all its rows have been read. The workflow writes
    each run's rows together in one shard (responses.collect_responses order), so at most one
    run per batch waits; rows of a run spread over shards are still scored right, held until
    the run is complete.
    """
    keys = read_keys(paths)
    kept, drops = kept_sorted_keys(keys, min_samples)
    if kept.height == 0:
        return *_empty_scores(), drops
    position = np.full(keys.height, -1, dtype=np.int64)
    position[kept["_row"].to_numpy()] = np.arange(kept.height)
    starts = _run_starts(kept)
    run_of = np.repeat(np.arange(starts.size), np.diff(np.append(starts, kept.height)))
    missing = np.diff(np.append(starts, kept.height))  # rows of each run not read yet
    kept = kept.drop("_row")
    pending_pos = np.zeros(0, dtype=np.int64)
    pending_vec: np.ndarray | None = None
    cons_parts: list[pl.DataFrame] = []
    samp_parts: list[pl.DataFrame] = []
    row = 0
    for path in paths:
        for vectors in embedding_batches(path, batch_rows):
            pos = position[row : row + vectors.shape[0]]
            row += vectors.shape[0]
            take = pos >= 0
            if not take.any():
                continue
            if pending_vec is not None and vectors.shape[1] != pending_vec.shape[1]:
                raise InputError(path, "embeddings have differing lengths")
            new = pos[take]
            np.subtract.at(missing, run_of[new], 1)
            pos = np.concatenate([pending_pos, new])
            vec = vectors[take]
            if pending_vec is not None:
                vec = np.concatenate([pending_vec, vec])
            done = missing[run_of[pos]] == 0
            if done.any():
                order = np.argsort(pos[done], kind="stable")
                chunk = score_sorted_runs(kept[pos[done][order]], vec[done][order], block_size)
                cons_parts += chunk[0]
                samp_parts += chunk[1]
            pending_pos, pending_vec = pos[~done], vec[~done]
    if row != keys.height or pending_pos.size:
        raise InputError(
            "embeddings",
            f"read {row} embeddings for {keys.height} rows; a shard changed while read",
        )
    return *_collect(cons_parts, samp_parts), drops
