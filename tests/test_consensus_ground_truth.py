"""Ground-truth selection: stronger side and g* against brute force, the tie rules, and the
seeded random-selection ablation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from polyculture.consensus.consistency import brute_force_scores, score_embeddings
from polyculture.consensus.ground_truth import (
    TIE_SIDE,
    attach_texts,
    select_ground_truth,
    selected_responses,
    stronger_side,
)


def _embeddings(rng: np.random.Generator, n_questions: int, n: int, dim: int) -> pl.DataFrame:
    rows = []
    for q in range(n_questions):
        for side in ("en", "local"):
            # a shared direction plus noise of a random size gives sides of different consistency
            base = rng.normal(size=dim)
            noise = rng.uniform(0.2, 3.0)
            for s in range(n):
                rows.append(
                    {
                        "question_id": f"q{q:03d}",
                        "side": side,
                        "sample": s,
                        "embedding": (base + noise * rng.normal(size=dim)).tolist(),
                        "raw": None,
                    }
                )
    return pl.DataFrame(rows).drop("raw")


def test_consistency_selection_matches_brute_force():
    rng = np.random.default_rng(2024)
    emb = _embeddings(rng, 40, 6, 12)
    cons, samples, _ = score_embeddings(emb)
    sel = select_ground_truth(cons, samples, selection="consistency", seed=0)
    assert sel.height == 40 and set(sel["selection"]) == {"consistency"}
    for q, strong, weak, gt, c_en, c_local in sel.select(
        "question_id", "strong_side", "weak_side", "gt_sample", "c_en", "c_local"
    ).iter_rows():
        ref = {}
        for side in ("en", "local"):
            vecs = np.asarray(
                emb.filter((pl.col("question_id") == q) & (pl.col("side") == side))
                .sort("sample")["embedding"]
                .to_list()
            )
            ref[side] = brute_force_scores(vecs)
        assert c_en == pytest.approx(ref["en"][0], abs=1e-6)
        assert c_local == pytest.approx(ref["local"][0], abs=1e-6)
        want_strong = "en" if ref["en"][0] > ref["local"][0] else "local"
        assert strong == want_strong and weak != strong
        assert gt == int(np.argmax(ref[strong][1]))


def _tables(c_en: float, c_local: float, sims: dict[str, list[float]]):
    cons = pl.DataFrame(
        {
            "question_id": ["q", "q"],
            "side": ["en", "local"],
            "n_samples": [3, 3],
            "consistency": [c_en, c_local],
        }
    )
    rows = [
        {"question_id": "q", "side": side, "sample": i, "mean_similarity": v}
        for side, values in sims.items()
        for i, v in enumerate(values)
    ]
    return cons, pl.DataFrame(rows)


def test_equal_consistency_makes_the_local_side_stronger():
    assert TIE_SIDE == "local"
    assert stronger_side(0.5, 0.5) == "local"
    assert stronger_side(0.5000001, 0.5) == "en"
    cons, samples = _tables(1.0, 1.0, {"en": [1.0, 1.0, 1.0], "local": [1.0, 1.0, 1.0]})
    sel = select_ground_truth(cons, samples, selection="consistency", seed=0)
    assert sel["strong_side"][0] == "local" and sel["weak_side"][0] == "en"


def test_equal_mean_similarity_picks_the_lowest_sample_index():
    cons, samples = _tables(0.2, 0.7, {"en": [0.9, 0.1, 0.9], "local": [0.3, 0.8, 0.8]})
    sel = select_ground_truth(cons, samples, selection="consistency", seed=0)
    assert sel["strong_side"][0] == "local" and sel["gt_sample"][0] == 1
    # the same rule on the English side, with the samples given in a shuffled row order
    cons, samples = _tables(0.9, 0.7, {"en": [0.4, 0.9, 0.9], "local": [0.3, 0.8, 0.8]})
    sel = select_ground_truth(
        cons, samples.sample(fraction=1.0, shuffle=True, seed=3), selection="consistency", seed=0
    )
    assert sel["strong_side"][0] == "en" and sel["gt_sample"][0] == 1


def test_random_selection_is_seeded_per_question_and_uses_usable_samples():
    rng = np.random.default_rng(9)
    emb = _embeddings(rng, 60, 4, 8)
    # question q000 lost its local samples 0 and 2 (blank): they must never be picked
    emb = emb.filter(
        ~(
            (pl.col("question_id") == "q000")
            & (pl.col("side") == "local")
            & pl.col("sample").is_in([0, 2])
        )
    )
    cons, samples, _ = score_embeddings(emb)
    a = select_ground_truth(cons, samples, selection="random", seed=5)
    b = select_ground_truth(cons, samples, selection="random", seed=5)
    c = select_ground_truth(cons, samples, selection="random", seed=6)
    assert a.equals(b)
    assert not a.equals(c)
    assert set(a["selection"]) == {"random"}
    # both sides and several sample positions occur; the random side ignores the consistency
    assert set(a["strong_side"]) == {"en", "local"}
    assert len(set(a["gt_sample"])) > 1
    by_consistency = select_ground_truth(cons, samples, selection="consistency", seed=5)
    assert (a["strong_side"] != by_consistency["strong_side"]).any()
    for seed in range(40):
        row = select_ground_truth(cons, samples, selection="random", seed=seed).filter(
            pl.col("question_id") == "q000"
        )
        if row["strong_side"][0] == "local":
            assert row["gt_sample"][0] in (1, 3)
    # a question's draw does not depend on which other questions are present
    subset = select_ground_truth(
        cons.filter(pl.col("question_id") == "q007"),
        samples.filter(pl.col("question_id") == "q007"),
        selection="random",
        seed=5,
    )
    assert subset.row(0) == a.filter(pl.col("question_id") == "q007").row(0)


def test_attach_texts_uses_the_weak_language_question_and_the_gt_sample_text():
    cons, samples = _tables(0.9, 0.2, {"en": [0.1, 0.9, 0.3], "local": [0.3, 0.2, 0.1]})
    sel = select_ground_truth(cons, samples, selection="consistency", seed=0)
    pairs = pl.DataFrame(
        {
            "question_id": ["q"],
            "statement_id": ["s"],
            "country": ["Greece"],
            "language": ["el"],
            "question_en": ["What do Greeks eat at Easter?"],
            "question_local": ["Τι τρώνε οι Έλληνες το Πάσχα;"],
        }
    )
    responses = pl.DataFrame(
        {
            "question_id": ["q"] * 6,
            "side": ["en"] * 3 + ["local"] * 3,
            "language": ["en"] * 3 + ["el"] * 3,
            "sample": [0, 1, 2, 0, 1, 2],
            "text": ["bread", "lamb", "fish", "αρνί", "ψωμί", "ψάρι"],
        }
    )
    out = attach_texts(sel, pairs, responses)
    row = out.row(0, named=True)
    assert row["strong_side"] == "en" and row["gt_text"] == "lamb"
    assert row["strong_language"] == "en" and row["weak_language"] == "el"
    assert row["question_weak"] == "Τι τρώνε οι Έλληνες το Πάσχα;"


def test_unknown_selection_mode_is_a_config_error():
    from polyculture.errors import ConfigError

    cons, samples = _tables(0.1, 0.2, {"en": [0.1, 0.2, 0.3], "local": [0.1, 0.2, 0.3]})
    with pytest.raises(ConfigError, match="unknown selection"):
        select_ground_truth(cons, samples, selection="best", seed=0)


def test_selected_responses_read_per_shard_give_the_same_table(tmp_path):
    """select_ground_truth reads the response shards one at a time, keeping only the selected
    samples' texts: the ground-truth table is the one built from all responses at once."""
    rng = np.random.default_rng(77)
    emb = _embeddings(rng, 30, 4, 8)
    cons, samples, _ = score_embeddings(emb)
    pairs = pl.DataFrame(
        {
            "question_id": [f"q{q:03d}" for q in range(30)],
            "country": ["Greece"] * 30,
            "language": ["el"] * 30,
            "question_en": [f"question {q}" for q in range(30)],
            "question_local": [f"ερώτηση {q}" for q in range(30)],
        }
    )
    responses = emb.select(
        "question_id",
        "side",
        pl.when(pl.col("side") == "en")
        .then(pl.lit("en"))
        .otherwise(pl.lit("el"))
        .alias("language"),
        "sample",
        pl.format("answer {} {} {}", "question_id", "side", "sample").alias("text"),
    )
    paths = []
    for k, shard in enumerate([responses.head(0), *responses.sort("sample").iter_slices(70)]):
        paths.append(tmp_path / f"shard-{k}.parquet")
        shard.write_parquet(paths[-1])
    for selection in ("consistency", "random"):
        sel = select_ground_truth(cons, samples, selection=selection, seed=3)
        picked = selected_responses(sel, paths)
        assert picked.height == sel.height
        assert_frame_equal(
            attach_texts(sel, pairs, picked), attach_texts(sel, pairs, responses), check_exact=True
        )
