"""WVS stage 1: topic table, microdata reading in four formats, polarity at each level (exact
values on hand-made microdata and on the seeded demo microdata), human self-consistency."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.demo import demo_truth, make_demo_microdata
from polyculture.wvs.polarity import (
    MicrodataColumns,
    code_answers,
    consistency_summary,
    human_consistency,
    microdata_polarity,
    pairwise_pearson,
    read_microdata,
)
from polyculture.wvs.topics import (
    default_affirmative,
    load_country_languages,
    load_templates,
    load_topics,
    parse_topic,
    select_topics,
)


def topic(key: str, scale: int, reversed_: bool = False, **extra: object):
    entry = {
        "key": key,
        "category": "T",
        "label": key,
        "pro": f"{key} pro",
        "con": f"{key} con",
        "scale": scale,
        "reversed": reversed_,
        "variants": [f"{key} variant {i}" for i in range(5)],
        **extra,
    }
    return parse_topic(entry, key, "test")


# A: 4-point, pro = 1-2. B: 10-point reversed, pro = 1-5. C: 5-point, 3 is neutral, pro = 1-2.
TOPICS = [topic("a001", 4), topic("b002", 10, True), topic("c003", 5)]
COUNTRY_MAP = pl.DataFrame(
    {"country": ["DK", "GB"], "language": ["da", "en"], "name": [None, None]}
)

# weights gwght × pwght: r1 2, r2 4, r3 2, r4 3, r5 1 (r6 has no weight, r7 no country: dropped)
MICRODATA = pl.DataFrame(
    {
        "cntry_AN": ["DK", "DK", "DK", "GB", "GB", "GB", None],
        "lnge_iso": ["da", "da", "en", "en", "EN-gb", "en", "da"],
        "gwght": [1.0, 2.0, 1.0, 3.0, 1.0, None, 1.0],
        "pwght": [2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0],
        "A001": [1, 4, -1, 2, 3, 1, 1],
        "B002": [3, 8, 5, 99, 10, 1, 1],
        "C003": [3, 1, -2, 5, 2, 1, 1],
    }
)

F = Fraction
EXPECTED = {
    ("country", "DK", "a001"): F(1, 3),
    ("country", "DK", "b002"): F(1, 2),
    ("country", "DK", "c003"): F(2, 3),
    ("country", "GB", "a001"): F(3, 4),
    ("country", "GB", "b002"): F(0),
    ("country", "GB", "c003"): F(1, 4),
    ("language", "da", "a001"): F(1, 3),
    ("language", "da", "b002"): F(1, 3),  # r3 (DK) was interviewed in English
    ("language", "da", "c003"): F(2, 3),
    ("language", "en", "a001"): F(3, 4),
    ("language", "en", "b002"): F(2, 3),
    ("language", "en", "c003"): F(1, 4),
    ("global", "global", "a001"): F(1, 2),
    ("global", "global", "b002"): F(4, 9),
    ("global", "global", "c003"): F(1, 2),
}


def write_formats(df: pl.DataFrame, tmp_path: Path) -> list[Path]:
    import pyreadstat

    paths = [tmp_path / "m.csv", tmp_path / "m.parquet", tmp_path / "m.dta", tmp_path / "m.sav"]
    df.write_csv(paths[0])
    df.write_parquet(paths[1])
    pdf = df.to_pandas()
    pdf["cntry_AN"] = pdf["cntry_AN"].fillna("")
    pyreadstat.write_dta(pdf, str(paths[2]))
    pyreadstat.write_sav(pdf, str(paths[3]))
    return paths


def as_dict(table: pl.DataFrame) -> dict[tuple[str, str, str], float]:
    return {
        (r["level"], r["group"], r["question_key"]): r["polarity"]
        for r in table.iter_rows(named=True)
    }


def test_default_affirmative_sides():
    assert default_affirmative(4, False) == {1, 2}
    assert default_affirmative(5, False) == {1, 2}  # 3 is neutral
    assert default_affirmative(10, False) == {6, 7, 8, 9, 10}
    assert default_affirmative(10, True) == {1, 2, 3, 4, 5}
    assert default_affirmative(8, True) == {1, 2, 3, 4}
    assert default_affirmative(3, False) == {1}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "dta", "sav"])
def test_polarity_exact_every_level_and_format(tmp_path: Path, fmt: str):
    path = {p.suffix[1:]: p for p in write_formats(MICRODATA, tmp_path)}[fmt]
    table, answers, summary = microdata_polarity(path, TOPICS, MicrodataColumns(), COUNTRY_MAP)
    got = as_dict(table)
    assert set(got) == set(EXPECTED)
    for cell, value in EXPECTED.items():
        assert got[cell] == pytest.approx(float(value), abs=1e-15), cell
    # neutral answer r1 C003=3 stays in the denominator; B002=99 is out of scale, not valid
    row = summary.filter(pl.col("question_key") == "b002").row(0, named=True)
    assert (row["n_out_of_scale"], row["n_valid"], row["n_missing"]) == (1, 4, 0)
    dk_c = table.filter((pl.col("group") == "DK") & (pl.col("question_key") == "c003"))
    assert dk_c["n_valid"][0] == 2 and dk_c["weight_sum"][0] == 6.0
    assert answers["respondent"].n_unique() == 5  # no-weight and no-country rows dropped


def test_language_from_country_map(tmp_path: Path):
    path = tmp_path / "m.parquet"
    MICRODATA.write_parquet(path)
    table, _, _ = microdata_polarity(
        path, TOPICS, MicrodataColumns(), COUNTRY_MAP, language_from="country"
    )
    got = as_dict(table)
    # r3 (DK, interviewed in English) now counts as Danish: da equals DK, en equals GB
    for key in ("a001", "b002", "c003"):
        assert got[("language", "da", key)] == got[("country", "DK", key)]
        assert got[("language", "en", key)] == got[("country", "GB", key)]
    no_lang = MICRODATA.drop("lnge_iso")
    no_lang.write_parquet(path)
    table, _, _ = microdata_polarity(path, TOPICS, MicrodataColumns(), COUNTRY_MAP)
    assert as_dict(table)[("language", "da", "b002")] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="language_from"):
        microdata_polarity(
            path, TOPICS, MicrodataColumns(), COUNTRY_MAP, language_from="respondent"
        )


def test_reversed_item_flips_the_pro_side(tmp_path: Path):
    path = tmp_path / "m.csv"
    MICRODATA.write_csv(path)
    plain = [TOPICS[0], topic("b002", 10, False), TOPICS[2]]
    got_rev = as_dict(microdata_polarity(path, TOPICS, MicrodataColumns(), COUNTRY_MAP)[0])
    got_plain = as_dict(microdata_polarity(path, plain, MicrodataColumns(), COUNTRY_MAP)[0])
    # a 10-point scale has no neutral middle: reversing gives the complement exactly
    for cell, value in got_rev.items():
        if cell[2] == "b002":
            assert got_plain[cell] == pytest.approx(1 - value)


def test_exclusions_and_volunteered_codes():
    t = topic("d004", 10, also_valid=[0], exclude=[5])
    df = pl.DataFrame(
        {
            "country": ["X"] * 4,
            "language": ["en"] * 4,
            "weight": [1.0, 1.0, 1.0, 1.0],
            "d004": [0.0, 5.0, 7.0, 11.0],
        }
    )
    answers, summary = code_answers(df, [t])
    assert answers["code"].to_list() == [0, 7] and answers["pro"].to_list() == [0, 1]
    row = summary.row(0, named=True)
    assert (row["n_excluded"], row["n_out_of_scale"], row["n_valid"]) == (1, 1, 2)


def test_demo_microdata_matches_its_known_polarity(repo_root: Path, tmp_path: Path):
    topics = list(load_topics(repo_root / "resources/wvs/topics.yaml").values())
    cmap = load_country_languages(repo_root / "resources/wvs/country_languages.csv")
    demo = repo_root / "resources/demo/wvs"
    table, _, _ = microdata_polarity(demo / "microdata.csv", topics, MicrodataColumns(), cmap)
    truth = pl.read_csv(demo / "polarity_truth.csv")
    joined = truth.join(table, on=["level", "group", "question_key"], how="full", coalesce=True)
    assert joined.height == truth.height == table.height
    assert (joined["polarity"] - joined["polarity_right"]).abs().max() < 1e-12
    assert (joined["n_valid"] == joined["n_valid_right"]).all()
    assert set(table["level"]) == {"country", "language", "global"}
    # the committed files are what the seeded generator writes
    micro, latent = make_demo_microdata(topics, seed=2025, respondents_per_country=200)
    micro.write_csv(tmp_path / "microdata.csv")
    assert (tmp_path / "microdata.csv").read_bytes() == (demo / "microdata.csv").read_bytes()
    again = demo_truth(latent)
    assert np.allclose(again["polarity"].to_numpy(), truth["polarity"].to_numpy(), atol=1e-15)


def test_bad_microdata_inputs(tmp_path: Path):
    path = tmp_path / "m.csv"
    MICRODATA.write_csv(path)
    with pytest.raises(InputError, match="weight column 'wt_extra' not found"):
        read_microdata(path, TOPICS, MicrodataColumns(weights=("gwght", "wt_extra")))
    with pytest.raises(InputError, match="no column for topic"):
        read_microdata(path, [*TOPICS, topic("z999", 4)], MicrodataColumns())
    with pytest.raises(InputError, match="country column 'S003' not found"):
        read_microdata(path, TOPICS, MicrodataColumns(country="S003"))
    # a topic with no valid answer anywhere
    MICRODATA.with_columns(pl.lit(-4).alias("A001")).write_csv(path)
    with pytest.raises(InputError, match="no valid answers for topic.*a001"):
        microdata_polarity(path, TOPICS, MicrodataColumns(), COUNTRY_MAP)
    # answer codes that are not numbers name the column and row
    MICRODATA.with_columns(pl.col("B002").cast(pl.String).replace("8", "eight")).write_csv(path)
    with pytest.raises(InputError, match="column 'B002' row 2"):
        read_microdata(path, TOPICS, MicrodataColumns())
    (tmp_path / "m.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unsupported microdata format"):
        read_microdata(tmp_path / "m.xlsx", TOPICS, MicrodataColumns())


def test_topic_table_and_templates_shipped(repo_root: Path):
    topics = load_topics(repo_root / "resources/wvs/topics.yaml")
    assert len(topics) >= 30
    assert all(len(t.variants) >= 5 for t in topics.values())
    assert topics["e035"].reversed and topics["e035"].affirmative == {1, 2, 3, 4, 5}
    assert topics["f118"].affirmative == {6, 7, 8, 9, 10}
    templates = load_templates(repo_root / "resources/wvs/templates.yaml")
    assert len(templates) >= 10 and len({t.text for t in templates}) == len(templates)
    with pytest.raises(ConfigError, match="wvs.topics.*unknown topic code.*x123"):
        select_topics(topics, ["f118", "x123"])
    assert [t.key for t in select_topics(topics, ["F118", "e035"])] == ["f118", "e035"]


def test_bad_topic_entries():
    with pytest.raises(InputError, match="at least 5 topic variants"):
        topic("k1", 4, variants=["a", "b"])
    with pytest.raises(InputError, match="affirmative code"):
        topic("k2", 4, affirmative=[1, 7])
    with pytest.raises(InputError, match="proper subset"):
        topic("k3", 4, affirmative=[1, 2, 3, 4])


def test_pairwise_pearson_no_self_pairs():
    draws = np.array([[0.1, 0.5, 0.9], [0.2, 0.4, 0.8], [0.9, 0.5, 0.1], [0.3, 0.3, 0.3]])
    a, b, r = pairwise_pearson(draws)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    full = np.corrcoef(draws[:3])
    assert r[0] == pytest.approx(full[0, 1]) and r[1] == pytest.approx(-1.0)
    assert r[3] == pytest.approx(full[1, 2])
    assert np.isnan(r[2]) and np.isnan(r[4]) and np.isnan(r[5])  # constant draw


def test_human_consistency_draws(repo_root: Path):
    n = 400
    rng = np.random.default_rng(0)
    answers = pl.DataFrame(
        {
            "respondent": np.repeat(np.arange(n), 4),
            "country": np.repeat(np.where(np.arange(n) < n // 2, "AA", "BB"), 4),
            "language": np.repeat(np.where(np.arange(n) < n // 2, "da", "en"), 4),
            "weight": np.repeat(rng.choice([0.5, 1.0, 2.0], size=n), 4),
            "question_key": np.tile(["q1", "q2", "q3", "q4"], n),
            "pro": (rng.random(4 * n) < np.tile([0.1, 0.4, 0.6, 0.9], n)).astype(np.int8),
        }
    )
    pairs = human_consistency(answers, n_draws=12, draw_size=10, seed=3)
    again = human_consistency(answers, n_draws=12, draw_size=10, seed=3)
    assert pairs.equals(again)
    assert (pairs["draw_a"] < pairs["draw_b"]).all()
    per_group = pairs.group_by("level", "group").len()
    assert set(per_group["len"]) == {12 * 11 // 2}
    assert set(per_group["group"]) == {"AA", "BB", "da", "en", "global"}
    summary = consistency_summary(pairs, 12, 10)
    assert summary.filter(pl.col("group") == "global")["mean"][0] > 0.5
    # full-size draws of 200+ answers per topic agree far more than draws of 10
    big = consistency_summary(human_consistency(answers, n_draws=12, draw_size=0, seed=3), 12, 0)
    assert big["mean"].min() > summary["mean"].max() - 0.05
    assert big.filter(pl.col("group") == "global")["mean"][0] > 0.95
    with pytest.raises(ConfigError, match="n_draws"):
        human_consistency(answers, n_draws=1, draw_size=10, seed=3)


def test_weighted_draws_follow_the_weights():
    # one topic, two respondents: pro with weight 9, con with weight 1 → draws ~90 % pro
    from polyculture.wvs.polarity import draw_polarities

    draws = draw_polarities(
        {"q": np.array([1.0, 0.0])},
        {"q": np.array([9.0, 1.0])},
        n_draws=4,
        draw_size=5000,
        rng=np.random.default_rng(1),
    )
    assert np.all(np.abs(draws - 0.9) < 0.02)
