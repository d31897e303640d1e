"""WVS stages 2-3 and 6 without a model: prompt grid and seeded balanced sample, country
check, prompts per language, judge replies and response polarity with counted drops."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture.backends.generation.base import Sampling
from polyculture.errors import ConfigError, InputError
from polyculture.wvs.prompts import (
    build_prompts,
    check_no_country,
    language_prompts,
    prompt_grid,
    sample_prompts,
    stage_seed,
    survey,
    translate_prompts,
)
from polyculture.wvs.stances import (
    JUDGE_SCHEMA,
    judge_conversation,
    parse_judgement,
    score_responses,
    shard_responses,
)
from polyculture.wvs.topics import load_country_languages, load_templates, load_topics


@pytest.fixture(scope="module")
def material(repo_root: Path):
    topics = load_topics(repo_root / "resources/wvs/topics.yaml")
    templates = load_templates(repo_root / "resources/wvs/templates.yaml")
    names = load_country_languages(repo_root / "resources/wvs/country_languages.csv")["name"]
    return topics, templates, names.drop_nulls().to_list()


def test_grid_and_paper_sample(material):
    topics, templates, names = material
    grid = prompt_grid(list(topics.values()), templates)
    assert grid.height == len(topics) * 5 * len(templates)
    assert grid.select("question_key", "template_id", "topic_variant_id").is_unique().all()
    prompts = build_prompts(list(topics.values()), templates, 300, seed=11, country_names=names)
    assert prompts.height == 300 and prompts["prompt_id"].is_unique().all()
    per_topic = prompts.group_by("question_key").len()["len"]
    assert per_topic.max() - per_topic.min() <= 1 and per_topic.len() == len(topics)
    assert prompts.select("question_key", "template_id", "topic_variant_id").is_unique().all()
    assert all("{" not in p and "[" not in p for p in prompts["prompt_en"])
    assert all(t in p for t, p in zip(prompts["topic_text"], prompts["prompt_en"], strict=True))
    # seeded: same seed, same sample; another seed, another sample
    again = build_prompts(list(topics.values()), templates, 300, seed=11, country_names=names)
    assert prompts.equals(again)
    other = build_prompts(list(topics.values()), templates, 300, seed=12, country_names=names)
    assert not prompts.equals(other)


def test_sample_limits(material):
    topics, templates, _ = material
    subset = [topics["f118"], topics["e035"]]
    grid = prompt_grid(subset, templates)
    with pytest.raises(ConfigError, match="wvs.n_prompts.*cannot cover"):
        sample_prompts(grid, 1, seed=0)
    with pytest.raises(ConfigError, match="wvs.n_prompts.*only"):
        sample_prompts(grid, grid.height + 2, seed=0)
    every = sample_prompts(grid, grid.height, seed=0)
    assert every.height == grid.height


def test_prompts_never_name_a_country(material):
    topics, templates, names = material
    grid = prompt_grid([topics["f118"]], templates)
    check_no_country(grid, names)
    bad = grid.with_columns(
        pl.col("prompt_en").str.replace("ten", "ten Danish citizens from Denmark")
    )
    with pytest.raises(InputError, match="names the country 'Denmark'"):
        check_no_country(bad, names)


def test_english_prompts_stay_and_empty_language_fails(material):
    topics, templates, _ = material
    prompts = build_prompts([topics["f118"], topics["e035"]], templates, 4, seed=1)
    en, drops = translate_prompts(prompts, "en", None)
    assert en["prompt"].to_list() == prompts["prompt_en"].to_list() and drops.dropped == 0
    with pytest.raises(ConfigError, match="need a translator"):
        translate_prompts(prompts, "da", None)
    assert language_prompts(en, "en", "prompts/en.parquet").height == 4
    with pytest.raises(InputError, match="no prompts in language 'da'"):
        language_prompts(en, "da", "prompts/da.parquet")
    with pytest.raises(InputError, match="no prompts in language 'en'"):
        language_prompts(en.clear(), "en", "prompts/en.parquet")


def test_survey_passes_its_stops_to_the_backend_and_cuts_as_guard(material):
    topics, templates, _ = material
    prompts = build_prompts([topics["f118"]], templates, 2, seed=1)
    en, _ = translate_prompts(prompts, "en", None)
    asked = []

    class Backend:  # a backend that ignores stops, so only the guard cut shortens its text
        def generate(self, conversations, n, sampling):
            asked.append(sampling)
            return [["1. a\n10. b\n11. c\n\nd"] * n for _ in conversations]

    sampling = Sampling(max_new_tokens=600, stop=("\n\n", "11."), seed=2)
    out = survey(
        Backend(),
        en,
        model="m",
        family="f",
        language="en",
        n_samples=2,
        sampling=sampling,
        stop=["11."],
    )
    assert asked == [Sampling(max_new_tokens=600, stop=("\n\n", "11."), seed=2)]
    assert out["response"].to_list() == ["1. a\n10. b\n"] * 4
    survey(
        Backend(),
        en,
        model="m",
        family="f",
        language="en",
        n_samples=1,
        sampling=Sampling(seed=2),
        stop=["11."],
    )
    assert asked[-1].stop == ("11.",)  # wvs.stop alone still reaches the backend


def test_stage_seed_is_stable_and_distinct():
    assert stage_seed(5, "m", "da", "0") == stage_seed(5, "m", "da", "0")
    seeds = {stage_seed(5, "m", lang, s) for lang in ("da", "en") for s in "01"}
    assert len(seeds) == 4 and all(0 <= s < 2**31 for s in seeds)


def test_judge_reply_validation(material):
    topics, _, _ = material
    conv = judge_conversation(topics["f118"], "She thinks it is nobody's business.")
    assert conv[0]["role"] == "system" and topics["f118"].pro in conv[1]["content"]
    assert JUDGE_SCHEMA["properties"]["stance"]["enum"] == ["pro", "con", "null"]
    assert parse_judgement({"stance": "pro"}) == "pro"
    assert parse_judgement({"stance": "NULL"}) == "null"
    for bad in (None, {}, {"stance": "maybe"}, {"stance": 1}, {"stance": "pro", "x": 1}, "pro"):
        assert parse_judgement(bad) is None


def labels_table(rows: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    """(language, response_id, stance) rows → a judged-summaries table."""
    return pl.DataFrame(
        {
            "model": "m",
            "family": "fam",
            "language": [r[0] for r in rows],
            "prompt_id": [r[1].split("/")[2] for r in rows],
            "template_id": "t01",
            "topic_variant_id": "f118:v1",
            "question_key": "f118",
            "response_id": [r[1] for r in rows],
            "sample": 0,
            "detected_language": [r[0] for r in rows],
            "n_items": 3,
            "item_index": list(range(1, len(rows) + 1)),
            "item_text": "x",
            "stance": pl.Series([r[2] for r in rows], dtype=pl.String),
        }
    )


def test_score_responses_counts_and_drops():
    labels = labels_table(
        [
            ("en", "m/en/p1/0", "pro"),
            ("en", "m/en/p1/0", "con"),
            ("en", "m/en/p1/0", "pro"),
            ("en", "m/en/p2/0", "null"),
            ("en", "m/en/p2/0", None),
            ("da", "m/da/p1/0", "con"),
            ("da", "m/da/p1/0", None),
            ("da", "m/da/p1/0", "null"),
            ("da", "m/da/p3/0", None),
        ]
    )
    scored, judge_drops, score_drops = score_responses(labels)
    assert scored["response_id"].to_list() == ["m/da/p1/0", "m/en/p1/0"]
    da = scored.row(0, named=True)
    assert (da["n_pro"], da["n_con"], da["n_null"], da["n_invalid"], da["pro_score"]) == (
        0,
        1,
        1,
        1,
        0.0,
    )
    en = scored.row(1, named=True)
    assert en["pro_score"] == pytest.approx(2 / 3) and en["family"] == "fam"
    assert (
        judge_drops[("m", "da")].total == 4
        and judge_drops[("m", "da")].reasons["judge_invalid"] == 2
    )
    assert judge_drops[("m", "en")].rate == pytest.approx(1 / 5)
    assert dict(score_drops[("m", "en")].reasons) == {"no_stance": 1}
    assert dict(score_drops[("m", "da")].reasons) == {"all_judgements_invalid": 1}
    with pytest.raises(Exception, match="dropped 1 of 2"):
        score_drops[("m", "en")].check(0.25)
    with pytest.raises(InputError, match="missing column"):
        score_responses(labels.drop("stance"))


def test_judge_shards_keep_responses_whole():
    labels = labels_table([("en", f"m/en/p{i // 3}/0", "pro") for i in range(15)])
    parts = [shard_responses(labels, s, 2) for s in range(2)]
    assert sum(p.height for p in parts) == 15
    assert not set(parts[0]["response_id"]) & set(parts[1]["response_id"])


def test_nothing_to_score_gives_empty_tables():
    from polyculture.wvs.stances import judge_items
    from polyculture.wvs.surveys import drops_frame

    empty = labels_table([("en", "m/en/p1/0", "pro")]).clear()
    labels = judge_items(None, empty.drop("stance"), {}, None)
    scored, judge_drops, score_drops = score_responses(labels)
    assert scored.height == 0 and "pro_score" in scored.columns
    assert drops_frame(judge_drops).vstack(drops_frame(score_drops)).height == 0
