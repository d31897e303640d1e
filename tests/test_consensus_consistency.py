"""Consistency (paper eq. 3) and per-sample centrality (eq. 4) against a brute-force double loop;
edge cases: N = 2, duplicates, blank samples, too few samples, zero vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from polyculture.consensus.consistency import (
    block_scores,
    brute_force_scores,
    score_embedding_files,
    score_embeddings,
)
from polyculture.consensus.responses import embedding_table, usable_responses
from polyculture.errors import InputError
from polyculture.io import write_table

EMBEDDINGS_SCHEMA = (
    Path(__file__).resolve().parents[1] / "schemas/tables/consensus_embeddings.schema.yaml"
)


def _table(emb: dict[tuple[str, str], np.ndarray], sample_ids: dict | None = None) -> pl.DataFrame:
    rows = []
    for (q, side), vecs in emb.items():
        ids = (sample_ids or {}).get((q, side), range(len(vecs)))
        for s, v in zip(ids, vecs, strict=True):
            rows.append({"question_id": q, "side": side, "sample": s, "embedding": v.tolist()})
    return pl.DataFrame(rows)


def test_block_scores_match_brute_force_on_random_embeddings():
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(25, 10, 16))
    scores = block_scores(emb)
    for q in range(25):
        c, per = brute_force_scores(emb[q])
        assert scores.consistency[q] == pytest.approx(c, abs=1e-12)
        np.testing.assert_allclose(scores.sample_mean[q], per, atol=1e-12)


def test_score_embeddings_matches_brute_force_with_mixed_sample_counts():
    """Blocks of different n (after blank samples were removed) are scored separately."""
    rng = np.random.default_rng(11)
    emb, ids = {}, {}
    for q in range(12):
        for side in ("en", "local"):
            n = int(rng.integers(2, 7))
            emb[(f"q{q:02d}", side)] = rng.normal(size=(n, 24)).astype(np.float32)
            # original sample indices with gaps, as after dropping blank samples
            ids[(f"q{q:02d}", side)] = sorted(rng.choice(10, size=n, replace=False).tolist())
    cons, samples, drops = score_embeddings(_table(emb, ids), block_size=3)
    assert drops.dropped == 0 and cons.height == 24
    for (q, side), vecs in emb.items():
        c, per = brute_force_scores(vecs.astype(np.float64))
        row = cons.filter((pl.col("question_id") == q) & (pl.col("side") == side))
        assert row["n_samples"][0] == len(vecs)
        assert row["consistency"][0] == pytest.approx(c, abs=1e-6)
        got = samples.filter((pl.col("question_id") == q) & (pl.col("side") == side)).sort("sample")
        assert got["sample"].to_list() == ids[(q, side)]
        np.testing.assert_allclose(got["mean_similarity"].to_numpy(), per, atol=1e-6)


def test_n_equals_two_consistency_is_the_single_pair():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.6, 0.8, 0.0])
    scores = block_scores(np.stack([np.stack([a, b])]))
    assert scores.consistency[0] == pytest.approx(0.6)
    # with one pair, each sample's mean similarity is that pair's cosine
    np.testing.assert_allclose(scores.sample_mean[0], [0.6, 0.6])


def test_duplicates_are_kept_as_agreement():
    v = np.array([0.2, 0.9, -0.1])
    w = np.array([-0.7, 0.1, 0.7])
    scores = block_scores(np.stack([np.stack([v, v, w])]))
    c, per = brute_force_scores(np.stack([v, v, w]))
    assert scores.consistency[0] == pytest.approx(c)
    # the two identical samples agree perfectly with each other, so they are the most central
    assert scores.sample_mean[0][0] == pytest.approx(scores.sample_mean[0][1])
    assert scores.sample_mean[0][0] > scores.sample_mean[0][2]
    identical = block_scores(np.stack([np.stack([v, v, v])]))
    assert identical.consistency[0] == pytest.approx(1.0)


def test_scale_does_not_matter_cosine_not_dot_product():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(4, 5, 8))
    scaled = emb * rng.uniform(0.1, 50, size=(4, 5, 1))
    np.testing.assert_allclose(block_scores(emb).consistency, block_scores(scaled).consistency)


def test_fewer_than_two_usable_samples_drops_the_question_with_reason():
    rng = np.random.default_rng(5)
    emb = {
        ("a", "en"): rng.normal(size=(3, 4)),
        ("a", "local"): rng.normal(size=(3, 4)),
        ("b", "en"): rng.normal(size=(3, 4)),
        ("b", "local"): rng.normal(size=(1, 4)),  # one usable sample left
        ("c", "local"): rng.normal(size=(3, 4)),  # no English sample at all
    }
    cons, samples, drops = score_embeddings(_table(emb))
    assert sorted(set(cons["question_id"].to_list())) == ["a"]
    assert set(samples["question_id"].to_list()) == {"a"}
    assert drops.total == 3
    assert dict(drops.reasons) == {"too_few_samples_local": 1, "too_few_samples_en": 1}


def test_blank_samples_are_dropped_before_embedding_and_counted():
    responses = pl.DataFrame(
        {
            "question_id": ["a"] * 6,
            "side": ["en", "en", "en", "local", "local", "local"],
            "language": ["en", "en", "en", "el", "el", "el"],
            "sample": [0, 1, 2, 0, 1, 2],
            "text": ["yes", "  ", "yes", "", "ναι", "όχι"],
        }
    )
    kept, drops = usable_responses(responses)
    assert drops.reasons == {"empty_sample": 2} and drops.total == 6
    assert kept["sample"].to_list() == [0, 2, 1, 2]
    vectors = {"yes": [1.0, 0.0], "ναι": [0.0, 1.0], "όχι": [1.0, 1.0]}
    table = embedding_table(kept, lambda texts: np.array([vectors[t] for t in texts]))
    cons, samples, _ = score_embeddings(table)
    en = cons.filter(pl.col("side") == "en")
    assert en["n_samples"][0] == 2 and en["consistency"][0] == pytest.approx(1.0)
    local = samples.filter(pl.col("side") == "local")
    assert local["sample"].to_list() == [1, 2]  # original indices survive the blank drop


def test_zero_embedding_and_bad_shapes_are_errors():
    with pytest.raises(InputError, match="all zeros"):
        block_scores(np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        block_scores(np.ones((2, 1, 4)))
    with pytest.raises(ValueError, match="min_samples"):
        score_embeddings(_table({("a", "en"): np.ones((2, 2))}), min_samples=1)


def test_unknown_side_and_duplicate_rows_are_errors():
    bad = _table({("a", "fr"): np.eye(2)})
    with pytest.raises(InputError, match="unknown side"):
        score_embeddings(bad)
    dup = pl.concat([_table({("a", "en"): np.eye(2)})] * 2)
    with pytest.raises(InputError, match="appears twice"):
        score_embeddings(dup)


def _workflow_shards(rng: np.random.Generator, questions: int, shards: int) -> list[pl.DataFrame]:
    """Embedding shards in the order embed_responses writes them: per shard every English run,
    then every local run (collect_responses order), blank samples missing; sample counts vary
    and some questions fall short of min_samples on one side."""
    out = []
    for k in range(shards):
        rows = []
        for side in ("en", "local"):
            for q in range(k, questions, shards):
                kept = [s for s in range(6) if rng.uniform() > 0.25]
                for s in kept:
                    rows.append((f"q{q:03d}", side, s, rng.normal(size=16).astype(np.float32)))
        out.append(
            pl.DataFrame(
                {
                    "question_id": [r[0] for r in rows],
                    "side": [r[1] for r in rows],
                    "sample": [r[2] for r in rows],
                    "embedding": pl.Series(
                        np.stack([r[3] for r in rows]), dtype=pl.Array(pl.Float32, 16)
                    ),
                }
            )
        )
    return out


def _write_shards(tmp_path, shards: list[pl.DataFrame]) -> list[str]:
    paths = []
    for k, shard in enumerate(shards):
        path = tmp_path / f"shard-{k}.parquet"
        write_table(shard, path, EMBEDDINGS_SCHEMA)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("batch_rows", [1, 7, 100_000])
def test_streamed_shards_give_exactly_the_in_memory_scores(tmp_path, batch_rows):
    """score_embedding_files reads the shards in batches of rows; its tables and drops are the
    whole-table scores' bit for bit, whatever the batch size (runs straddle batches)."""
    shards = _workflow_shards(np.random.default_rng(31), 40, 3)
    paths = _write_shards(tmp_path, shards)
    cons, samples, drops = score_embeddings(pl.concat(shards), min_samples=3, block_size=4)
    s_cons, s_samples, s_drops = score_embedding_files(
        paths, min_samples=3, block_size=4, batch_rows=batch_rows
    )
    assert drops.dropped > 0 and cons.height > 20
    assert_frame_equal(s_cons, cons, check_exact=True)
    assert_frame_equal(s_samples, samples, check_exact=True)
    assert (s_drops.total, s_drops.reasons) == (drops.total, drops.reasons)


def test_streamed_runs_spread_over_shards_and_shuffled_rows(tmp_path):
    """Rows of one (question, side) spread over two shards in any order are held until the run
    is complete: the scores are still the whole table's."""
    table = pl.concat(_workflow_shards(np.random.default_rng(5), 12, 1))
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=2)
    half = shuffled.height // 2
    paths = _write_shards(tmp_path, [shuffled.head(half), shuffled.tail(-half)])
    cons, samples, _ = score_embeddings(table)
    s_cons, s_samples, _ = score_embedding_files(paths, batch_rows=5)
    assert_frame_equal(s_cons, cons, check_exact=True)
    assert_frame_equal(s_samples, samples, check_exact=True)


def test_streamed_shards_bad_input_names_the_file(tmp_path):
    shards = _workflow_shards(np.random.default_rng(1), 4, 2)
    paths = _write_shards(tmp_path, shards)
    with pytest.raises(InputError, match="does not exist"):
        score_embedding_files([*paths, str(tmp_path / "shard-9.parquet")])
    no_embedding = tmp_path / "keys-only.parquet"
    shards[0].drop("embedding").write_parquet(no_embedding)
    with pytest.raises(InputError, match="keys-only.parquet.*missing column.*'embedding'"):
        score_embedding_files([str(no_embedding)])
    (tmp_path / "dup").mkdir()
    with pytest.raises(InputError, match="appears twice"):
        score_embedding_files(_write_shards(tmp_path / "dup", [shards[0], shards[0]]))
    (tmp_path / "empty").mkdir()
    empty = _write_shards(tmp_path / "empty", [shards[0].clear()])
    cons, samples, drops = score_embedding_files(empty)
    assert cons.height == samples.height == drops.total == 0
