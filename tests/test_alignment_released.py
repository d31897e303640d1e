"""The released analysis's self-consistency, exactly: the closed form against the self-join the
released code runs (on the released responses, and on random weighted tables), and its
bootstrap distribution drawn from rows of the joined table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyculture.wvs.alignment import (
    RELEASED_ERROR_RATE,
    build_analysis_data,
    pair_correlation,
    released_pair_spearman,
)
from polyculture.wvs.consistency import self_consistency_table
from polyculture.wvs.released import released_consistency, released_replicates
from polyculture.wvs.replication import prepare_inputs


def _self_join_spearman(cluster, value, weight) -> float:
    """The released recipe on an explicit table: each row `weight` times, numbered, self-joined
    on the cluster, only pairs of a row with itself dropped, Spearman, divided by 0.955."""
    t = pl.DataFrame(
        {
            "c": np.repeat(np.asarray(cluster), weight),
            "v": np.repeat(np.asarray(value, dtype=np.float64), weight),
        }
    ).with_row_index("i")
    j = t.join(t, on="c").filter(pl.col("i") != pl.col("i_right"))
    return j.select(pl.corr("v", "v_right", method="spearman")).item() / (1 - RELEASED_ERROR_RATE)


@pytest.mark.parametrize("seed", range(6))
def test_released_pair_spearman_is_the_self_join(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 60))
    cluster = rng.integers(0, 6, size=n)
    value = rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], size=n)  # many ties, as judged data
    weight = rng.integers(0, 4, size=n)  # 0: a response the join or the draw left out
    got, n_pairs = released_pair_spearman(cluster, value, weight)
    assert got == pytest.approx(_self_join_spearman(cluster, value, weight), abs=1e-12)
    w = np.bincount(cluster, weights=weight)
    assert n_pairs == int((w * (w - 1)).sum())


def test_released_differs_from_sound_pairing() -> None:
    # Two responses per topic that disagree: distinct-response pairs anti-correlate perfectly,
    # while the released pairing of a response's 4 copies with each other pulls the value up.
    cluster = np.repeat(np.arange(5), 2)
    value = np.array([0.0, 1.0, 0.2, 0.9, 0.4, 0.6, 0.1, 0.8, 0.3, 0.7])
    sound, _ = pair_correlation(cluster, value)
    released, _ = released_pair_spearman(cluster, value, np.full(10, 4))
    assert sound < -0.95 and released > sound + 0.5
    # perfect agreement exceeds 1: the divisor
    agree = np.repeat([0.1, 0.5, 0.9, 0.3], 3)
    top, _ = released_pair_spearman(np.repeat(np.arange(4), 3), agree, np.ones(12))
    assert top == pytest.approx(1 / 0.955)


@pytest.fixture(scope="module")
def released_data(shared_data: Path):
    d = shared_data / "rystrom2025"
    path = d / "all_lang_model_responses_with_scores.csv"
    if not path.is_file():
        pytest.skip(f"released responses not found in {d}")
    inp = prepare_inputs(
        responses_source="file",
        responses_path=path,
        ground_truth_source="file",
        country_path=d / "ground_truth_every_country.csv",
        language_path=d / "ground_truth_per_language.csv",
        global_path=d / "ground_truth_global.csv",
        country_languages_path=d / "country_languages.csv",
        use_merged=False,
    )
    return d, build_analysis_data(inp.responses, inp.ground_truth, inp.country_languages)


def test_released_consistency_on_released_responses(released_data) -> None:
    """The no-resample value equals, to 1e-9, what the released calculate_consistency computes on
    the responses joined to the per-language ground truth (re-done here as a polars self-join)."""
    d, data = released_data
    res = pl.read_csv(d / "all_lang_model_responses_with_scores.csv")
    gt = pl.read_csv(d / "ground_truth_per_language.csv").with_columns(
        pl.col("question_key").str.to_lowercase()
    )
    joined = (
        res.join(gt, on="question_key")
        .select("language", "question_key", "response_pro_score", "model_name")
        .with_row_index("index")
    )
    pairs = joined.join(joined, on=["question_key", "model_name", "language"]).filter(
        pl.col("index") != pl.col("index_right")
    )
    ref = pairs.group_by("language", "model_name").agg(
        (
            pl.corr("response_pro_score", "response_pro_score_right", method="spearman")
            / (1 - 0.045)
        ).alias("ref"),
        pl.len().alias("ref_pairs"),
    )
    got = released_consistency(data, "language")
    both = got.join(ref, left_on=["model", "language"], right_on=["model_name", "language"])
    assert both.height == 36 == got.height
    assert (both["consistency_released"] - both["ref"]).abs().max() < 1e-9
    assert (both["n_pairs"] == both["ref_pairs"]).all()


def test_released_bootstrap_distribution(released_data) -> None:
    """Replicates drawn from rows of the joined table: seeded, centred near the no-resample value
    and above it (a drawn row's duplicates pair with each other, which only adds agreement)."""
    _, data = released_data
    a = released_replicates(data, "language", 30, seed=11)
    b = released_replicates(data, "language", 30, seed=11)
    assert a.consistency.equals(b.consistency) and a.alignment.equals(b.alignment)
    point = released_consistency(data, "language")
    boot = a.consistency.group_by("model", "language").agg(
        pl.col("consistency_released").mean().alias("boot_mean"),
        pl.col("consistency_released").std().alias("boot_sd"),
    )
    m = point.join(boot, on=["model", "language"])
    gap = m["boot_mean"] - m["consistency_released"]
    assert gap.mean() > 0.005 and (gap > 0).mean() > 0.75
    assert ((m["boot_mean"] - m["consistency_released"]).abs() < 0.1).all()
    assert (m["boot_sd"] > 0).all()
    # every drawn row belongs to one group, so each cell × group has its own draw
    al = a.alignment.filter(pl.col("replicate") == 0)
    assert al.height == 36 * 4 and al["alignment"].is_not_null().all()


def test_consistency_table_reports_both(released_data) -> None:
    _, data = released_data
    table = self_consistency_table(data, rounds=20, seed=3, released_rounds=20)
    point = released_consistency(data, "language")
    m = table.join(point, on=["model", "language"], suffix="_point")
    assert (m["consistency_released"] - m["consistency_released_point"]).abs().max() < 1e-12
    assert (m["released_ci_low"] <= m["released_ci_high"]).all()
    # the sound statistic stays beside it and is lower everywhere on the released data
    assert (m["consistency"] < m["consistency_released"]).all()
