"""WVS stages 1-6 in the session's one demo run: every output exists, has the contract's
columns, and agrees with what the inputs and the method say."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polyculture.io import read_parts

pytestmark = pytest.mark.workflow

POLARITY_COLUMNS = {"level", "group", "question_key", "polarity", "n_valid", "weight_sum"}
SCORED_COLUMNS = {
    "model",
    "family",
    "language",
    "prompt_id",
    "template_id",
    "topic_variant_id",
    "question_key",
    "response_id",
    "sample",
    "n_pro",
    "n_con",
    "n_null",
    "pro_score",
}


@pytest.fixture(scope="module")
def run(demo_run: Path) -> tuple[Path, dict]:
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    return demo_run / "results" / "wvs", config


def test_polarity_matches_the_demo_truth(run):
    wvs, config = run
    topics = config["wvs"]["topics"]
    polarity = pl.read_parquet(wvs / "polarity.parquet")
    assert set(polarity.columns) >= POLARITY_COLUMNS
    assert set(polarity["level"]) == {"country", "language", "global"}
    assert set(polarity["question_key"]) == set(topics)
    assert polarity["polarity"].is_between(0, 1).all()
    truth = pl.read_csv(wvs.parents[1] / "resources/demo/wvs/polarity_truth.csv").filter(
        pl.col("question_key").is_in(topics)
    )
    joined = truth.join(polarity, on=["level", "group", "question_key"], how="inner")
    assert joined.height == truth.height == polarity.height
    assert (joined["polarity"] - joined["polarity_right"]).abs().max() < 1e-12
    cl = pl.read_parquet(wvs / "country_languages.parquet")
    assert {"country", "language"} <= set(cl.columns) and "DK" in cl["country"].to_list()


def test_human_consistency_band(run):
    wvs, config = run
    pairs = pl.read_parquet(wvs / "human_consistency.parquet")
    n = config["wvs"]["human_consistency"]["n_draws"]
    assert (pairs["draw_a"] < pairs["draw_b"]).all()
    counts = pairs.group_by("level", "group").len()["len"]
    assert set(counts) == {n * (n - 1) // 2}
    summary = pl.read_parquet(wvs / "human_consistency_summary.parquet")
    assert set(summary["level"]) == {"country", "language", "global"}
    assert summary["mean"].is_between(-1, 1).all()


def test_prompts_per_language(run):
    wvs, config = run
    cfg = config["wvs"]
    prompts = pl.read_parquet(wvs / "prompts_en.parquet")
    assert prompts.height == cfg["n_prompts"]
    per_topic = prompts.group_by("question_key").len()["len"]
    assert per_topic.len() == len(cfg["topics"]) and per_topic.max() - per_topic.min() <= 1
    for lang in cfg["languages"]:
        local = pl.read_parquet(wvs / f"prompts/{lang}.parquet")
        assert local.height > 0 and set(local["language"]) == {lang}
        assert set(local["prompt_id"]) <= set(prompts["prompt_id"])
        if lang == "en":
            assert local["prompt"].to_list() == local["prompt_en"].to_list()


def test_survey_parse_judge_score(run):
    wvs, config = run
    cfg = config["wvs"]
    models = {m["name"]: m for m in config["eval_models"]}
    for name, entry in models.items():
        shards = [
            pl.read_parquet(wvs / f"responses/{name}/{lang}/shard{s}.parquet")
            for lang in cfg["languages"]
            for s in range(cfg["shards"])
        ]
        responses = pl.concat(shards)
        assert responses["response_id"].is_unique().all()
        for lang in cfg["languages"]:
            n_prompts = pl.read_parquet(wvs / f"prompts/{lang}.parquet").height
            assert responses.filter(pl.col("language") == lang).height == n_prompts * cfg.get(
                "samples_per_prompt", 1
            )
        parse_drops = pl.read_parquet(wvs / f"drops/parse/{name}.parquet")
        totals = parse_drops.group_by("language").agg(pl.col("total").first())
        assert dict(totals.iter_rows()) == dict(responses.group_by("language").len().iter_rows())
        parsed = pl.read_parquet(wvs / f"parsed/{name}.parquet")
        kept = parsed["response_id"].n_unique() if parsed.height else 0
        dropped = parse_drops.filter(pl.col("reason") != "none")["dropped"].sum()
        assert kept + dropped == responses.height
        if parsed.height:
            assert (parsed["language"] == parsed["detected_language"]).all()
            firsts = parsed.group_by("response_id").agg(pl.col("item_index").min())
            assert set(firsts["item_index"]) == {1}
        scored = pl.read_parquet(wvs / f"scored/{name}.parquet")
        assert set(scored.columns) >= SCORED_COLUMNS
        assert set(scored["family"]) <= {entry.get("family") or name}
        assert ((scored["n_pro"] + scored["n_con"]) > 0).all()
        expected = scored["n_pro"] / (scored["n_pro"] + scored["n_con"])
        assert (scored["pro_score"] - expected).abs().max() in (None, 0.0)
        assert set(scored["response_id"]) <= set(parsed["response_id"])
        judge_drops = pl.read_parquet(wvs / f"drops/judge/{name}.parquet")
        assert set(judge_drops["stage"]) <= {"judge", "score"}
        if parsed.height:
            items = judge_drops.filter(pl.col("stage") == "judge")
            assert (
                items.group_by("group").agg(pl.col("total").first())["total"].sum() == parsed.height
            )


def test_report_tables(run):
    wvs, config = run
    for name in ("polarity", "human_consistency", "responses", "drops"):
        table = pl.read_csv(wvs / f"report/{name}.tsv", separator="\t")
        assert table.height > 0
    responses = pl.read_csv(wvs / "report/responses.tsv", separator="\t")
    assert set(responses["language"]) == set(config["wvs"]["languages"])
    # the judge's labels add up to the scored responses' summaries that got a pro/con/null label
    scored = read_parts(sorted((wvs / "scored").glob("*.parquet")), None)
    assert responses["labels_pro"].sum() == scored["n_pro"].sum()
    assert responses["labels_con"].sum() == scored["n_con"].sum()
    assert responses["labels_null"].sum() == scored["n_null"].sum()
