"""Alignment, bootstrap and self-consistency (stages 7-8) against hand-computed small cases."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from polyculture.wvs.alignment import (
    alignment_table,
    bootstrap_pvalue,
    build_analysis_data,
    cluster_draw,
    country_correlations,
    full_draw,
    pair_correlation,
    percentile_interval,
    released_copies,
    replicates,
    response_draw,
    spearman,
    spearman_rows,
)
from polyculture.wvs.consistency import below_human_band, human_band, self_consistency_table


def responses(rows: list[tuple[str, str, str, float]], family: str = "fam") -> pl.DataFrame:
    """(model, language, topic, polarity) rows as a canonical response table."""
    return pl.DataFrame(
        {
            "model": [r[0] for r in rows],
            "family": [family] * len(rows),
            "language": [r[1] for r in rows],
            "question_key": [r[2] for r in rows],
            "response_id": [f"r{i}" for i in range(len(rows))],
            "pro_score": [r[3] for r in rows],
        }
    )


def truth(level: str, group: str, values: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "level": [level] * len(values),
            "group": [group] * len(values),
            "question_key": list(values),
            "polarity": list(values.values()),
        }
    )


# Model M answers three topics in Danish; a population's polarity per topic.
SMALL = responses(
    [
        ("M", "da", "a", 0.2),
        ("M", "da", "a", 0.4),  # topic mean 0.3
        ("M", "da", "b", 0.9),
        ("M", "da", "b", 0.7),
        ("M", "da", "b", 0.8),  # topic mean 0.8
        ("M", "da", "c", 0.1),  # topic mean 0.1
        ("M", "da", "d", 0.6),  # no ground truth anywhere
    ]
)
GT = pl.concat(
    [
        truth("language", "da", {"a": 0.5, "b": 0.9, "c": 0.2}),  # same order as the means
        truth("country", "DK", {"a": 0.5, "b": 0.1, "c": 0.9}),  # reversed ranks
        truth("global", "global", {"a": 0.4, "b": 0.6}),  # only two topics
    ]
)


def test_spearman_matches_scipy_with_ties_and_missing_values():
    x = np.array([0.1, 0.4, 0.4, 0.9, np.nan, 0.3])
    y = np.array([1.0, 2.0, 3.0, 3.0, 5.0, np.nan])
    keep = np.isfinite(x) & np.isfinite(y)
    assert spearman(x, y) == pytest.approx(spearmanr(x[keep], y[keep]).statistic)
    # rows are independent; fewer than 3 points or a constant vector give NaN
    rows = spearman_rows(
        np.array([[1, 2, 3.0], [1, 1, 1.0], [1, np.nan, 2]]),
        np.array([[3, 2, 1.0], [1, 2, 3], [1, 2, 3.0]]),
    )
    assert rows[0] == pytest.approx(-1.0)
    assert np.isnan(rows[1]) and np.isnan(rows[2])


def test_topic_unit_correlates_topic_means_across_topics():
    data = build_analysis_data(SMALL, GT)
    obs = replicates(data, "cluster", 0, seed=1, released_level=None).alignment

    def get(level, unit):
        return obs.filter((pl.col("level") == level) & (pl.col("unit") == unit)).row(0, named=True)

    # means (0.3, 0.8, 0.1) vs (0.5, 0.9, 0.2): same ranks
    assert get("language", "topic")["alignment"] == pytest.approx(1.0)
    assert get("language", "topic")["n_points"] == 3
    assert get("country", "topic")["alignment"] == pytest.approx(-1.0)
    # two topics are not enough for a correlation
    assert get("global", "topic")["alignment"] is None


def test_response_unit_pairs_each_response_with_its_topic_truth():
    data = build_analysis_data(SMALL, GT)
    obs = replicates(data, "cluster", 0, seed=1, released_level=None).alignment
    row = obs.filter((pl.col("level") == "language") & (pl.col("unit") == "response")).row(
        0, named=True
    )
    x = [0.2, 0.4, 0.9, 0.7, 0.8, 0.1]
    y = [0.5, 0.5, 0.9, 0.9, 0.9, 0.2]
    assert row["alignment"] == pytest.approx(spearmanr(x, y).statistic)
    assert row["n_points"] == 6  # the response to topic d has no ground truth


def test_pair_correlation_enumerates_ordered_pairs_without_self_pairs():
    cluster = np.array([0, 0, 0, 1, 1])
    value = np.array([0.2, 0.4, 0.9, 0.1, 0.3])
    pairs = [
        (value[i], value[j])
        for i, j in itertools.permutations(range(5), 2)
        if cluster[i] == cluster[j]
    ]
    a, b = np.array(pairs).T
    r, n = pair_correlation(cluster, value)
    assert n == 6 + 2
    assert r == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_pair_correlation_excludes_duplicates_of_one_response_unless_released():
    # a bootstrap draw that picked response 0 twice: rows 0 and 1 are the same response
    cluster = np.array([0, 0, 0, 1, 1, 1])
    item = np.array([0, 0, 1, 2, 3, 4])
    value = np.array([0.9, 0.9, 0.1, 0.2, 0.6, 0.7])
    sound = [
        (value[i], value[j])
        for i, j in itertools.permutations(range(6), 2)
        if cluster[i] == cluster[j] and item[i] != item[j]
    ]
    released = [
        (value[i], value[j])
        for i, j in itertools.permutations(range(6), 2)
        if cluster[i] == cluster[j]
    ]
    r, n = pair_correlation(cluster, value, item=item, exclude_same_item=True)
    assert n == len(sound) == 4 + 6
    assert r == pytest.approx(np.corrcoef(*np.array(sound).T)[0, 1])
    r_rel, n_rel = pair_correlation(cluster, value, item=item, exclude_same_item=False)
    assert n_rel == len(released) == 12
    assert r_rel == pytest.approx(np.corrcoef(*np.array(released).T)[0, 1])
    # the self-pairs inflate agreement
    assert r_rel > r


def test_pair_correlation_weights_repeat_rows():
    cluster = np.array([0, 0, 1, 1])
    value = np.array([0.1, 0.5, 0.3, 0.9])
    weight = np.array([3, 3, 3, 3])
    expanded = np.repeat(np.arange(4), 3)
    r_w, n_w = pair_correlation(cluster, value, weight=weight, exclude_same_item=False)
    r_e, n_e = pair_correlation(cluster[expanded], value[expanded], exclude_same_item=False)
    assert n_w == n_e == 2 * 6 * 5
    assert r_w == pytest.approx(r_e)


def test_pair_correlation_without_pairs_is_nan():
    r, n = pair_correlation(np.array([0, 1, 2]), np.array([0.1, 0.5, 0.9]))
    assert np.isnan(r) and n == 0


def test_self_consistency_has_no_self_pairs():
    # one response per topic: there is nothing to pair, so consistency is undefined (a
    # self-pairing implementation would report perfect consistency)
    one_each = responses(
        [("M", "da", t, v) for t, v in zip("abcd", (0.1, 0.5, 0.9, 0.3), strict=True)]
    )
    gt = truth("language", "da", {t: 0.5 for t in "abcd"})
    table = self_consistency_table(
        build_analysis_data(one_each, gt), rounds=20, seed=3, released_rounds=0
    )
    assert table["n_pairs"][0] == 0
    assert table["consistency"][0] is None or np.isnan(table["consistency"][0])


def test_self_consistency_value_and_released_inflation():
    rows = [
        ("M", "da", "a", 0.9),
        ("M", "da", "a", 0.7),
        ("M", "da", "b", 0.1),
        ("M", "da", "b", 0.4),
        ("M", "da", "c", 0.5),
        ("M", "da", "c", 0.5),
    ]
    gt = pl.concat(
        [truth("language", g, {"a": 0.3, "b": 0.6, "c": 0.5}) for g in ("da", "en", "nl")]
    )
    table = self_consistency_table(
        build_analysis_data(responses(rows), gt), rounds=200, seed=5, released_rounds=200
    )
    row = table.row(0, named=True)
    vals = np.array([r[3] for r in rows])
    topics = np.array([0, 0, 1, 1, 2, 2])
    pairs = np.array(
        [
            (vals[i], vals[j])
            for i, j in itertools.permutations(range(6), 2)
            if topics[i] == topics[j]
        ]
    )
    assert row["consistency"] == pytest.approx(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
    assert row["n_pairs"] == 6
    assert row["ci_low"] <= row["consistency"] <= row["ci_high"]
    # three language groups: the released join repeats every response three times
    assert row["consistency_released"] > row["consistency"]


def test_human_band_and_below_band_flag():
    human = pl.DataFrame({"group": ["US", "DK"], "consistency": [0.66, 0.84]})
    assert human_band(human) == (0.66, 0.84)
    table = pl.DataFrame({"ci_high": [0.5, 0.7]})
    assert below_human_band(table, human)["below_human"].to_list() == [True, False]


def test_cluster_draw_keeps_all_responses_of_each_drawn_topic():
    data = build_analysis_data(SMALL, GT)
    cell = data.cells[0]
    # topics: a=0, b=1, c=2, d=3; draw b twice and c once
    d = cluster_draw(cell, np.array([1, 1, 2, 2])[:3])
    assert sorted(cell.value[d.rows].tolist()) == sorted([0.9, 0.7, 0.8, 0.9, 0.7, 0.8, 0.1])
    assert d.cluster_topic.tolist() == [1, 1, 2]  # the two draws of b are separate clusters
    assert np.bincount(d.cluster).tolist() == [3, 3, 1]
    obs = full_draw(cell)
    assert obs.rows.tolist() == list(range(cell.n))
    assert obs.cluster_topic.tolist() == [0, 1, 2, 3]


def test_response_draw_size_and_clusters():
    data = build_analysis_data(SMALL, GT)
    d = response_draw(data.cells[0], 50, np.random.default_rng(0))
    assert d.rows.size == 50
    assert set(d.cluster_topic.tolist()) <= {0, 1, 2, 3}


def test_released_copies_count_groups_per_topic():
    gt = pl.concat(
        [truth("language", "da", {"a": 0.1, "b": 0.2}), truth("language", "en", {"a": 0.3})]
    )
    data = build_analysis_data(SMALL, gt)
    assert released_copies(data, "language").tolist() == [2, 1, 0, 0]


def test_replicates_are_seeded():
    data = build_analysis_data(SMALL, GT)
    a = replicates(data, "cluster", 30, seed=11)
    b = replicates(data, "cluster", 30, seed=11)
    c = replicates(data, "cluster", 30, seed=12)
    assert a.alignment.equals(b.alignment) and a.consistency.equals(b.consistency)
    assert not a.alignment.equals(c.alignment)
    for scheme in ("cluster", "responses"):
        r = replicates(data, scheme, 5, seed=1, resample_size=4)
        assert sorted(r.alignment["replicate"].unique().to_list()) == [-1, 0, 1, 2, 3, 4]


def test_alignment_table_interval_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(4)
    topics = [f"t{i}" for i in range(12)]
    truth_vals = dict(zip(topics, rng.uniform(0, 1, 12), strict=True))
    rows = [
        ("M", "da", t, float(np.clip(truth_vals[t] + rng.normal(0, 0.2), 0, 1)))
        for t in topics
        for _ in range(3)
    ]
    data = build_analysis_data(responses(rows), truth("language", "da", truth_vals))
    t1 = alignment_table(data, scheme="cluster", rounds=200, seed=9)
    t2 = alignment_table(data, scheme="cluster", rounds=200, seed=9)
    assert t1.equals(t2)
    for row in t1.iter_rows(named=True):
        assert row["ci_low"] <= row["alignment"] <= row["ci_high"]
        assert row["n_boot_valid"] == 200 and row["n_responses"] == 36
    assert set(t1["unit"]) == {"topic", "response"}


def test_percentile_interval_and_bootstrap_pvalue_small_cases():
    low, high, sd, n = percentile_interval([1.0, 2.0, 3.0, 4.0, np.nan], alpha=0.5)
    assert (low, high, n) == (1.75, 3.25, 4)
    assert sd == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    # all 9 replicates above zero: p = 2 · (1 + 0) / 10
    assert bootstrap_pvalue(np.arange(1, 10)) == pytest.approx(0.2)
    # centred on zero: p = 1
    assert bootstrap_pvalue([-1.0, 1.0]) == 1.0


def test_country_correlations_hand_case():
    gt = pl.concat(
        [
            truth("country", "A", {"a": 0.1, "b": 0.2, "c": 0.3}),
            truth("country", "B", {"a": 0.3, "b": 0.2, "c": 0.1}),
            truth("global", "global", {"a": 0.1, "b": 0.3, "c": 0.2}),
        ]
    )
    corr = country_correlations(gt)

    def get(a, b):
        return corr.filter((pl.col("group_a") == a) & (pl.col("group_b") == b))["correlation"][0]

    assert get("A", "B") == pytest.approx(-1.0)
    assert get("A", "A") == pytest.approx(1.0)
    assert get("A", "global") == pytest.approx(np.corrcoef([0.1, 0.2, 0.3], [0.1, 0.3, 0.2])[0, 1])
