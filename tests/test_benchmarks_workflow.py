"""The benchmark rules in the session's demo run (no run of their own): blend-mcq's items, one
response per item and model, per-item scores, aggregates, the paired comparisons and the
summaries; the CLI scores the workflow's responses to the same numbers; the drops reach the
report's drop table and `polyculture summary`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from polyculture.cli import main
from polyculture.compare import pair_models


@pytest.fixture(scope="module")
def cfg(demo_run: Path) -> dict:
    return yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mcq(demo_run: Path) -> Path:
    return demo_run / "results" / "evaluate" / "blend-mcq"


def test_every_model_answers_and_is_scored_on_every_item(cfg: dict, mcq: Path) -> None:
    items = pl.read_parquet(mcq / "items.parquet")
    countries = cfg["evaluate"]["benchmarks"][0]["groups"]["values"]
    assert set(items["group"]) == set(countries) and items["item_id"].is_unique().all()
    for m in (e["name"] for e in cfg["eval_models"]):
        responses = pl.read_parquet(mcq / m / "responses.parquet")
        assert responses["item_id"].to_list() == items["item_id"].to_list()
        scores = pl.read_parquet(mcq / m / "scores.parquet")
        assert scores.height == items.height and set(scores["model"]) == {m}
        assert scores["accuracy"].is_in([0.0, 1.0]).all()
        # an unparseable answer is wrong
        assert scores.filter(pl.col("dropped"))["accuracy"].sum() == 0
        drops = pl.read_parquet(mcq / m / "score_drops.parquet")
        assert drops["total"].max() == items.height
        assert drops["dropped"].sum() == scores["dropped"].sum()


def test_summaries_hold_every_model_group_and_pair(cfg: dict, mcq: Path) -> None:
    doc = json.loads((mcq / "summary.json").read_text(encoding="utf-8"))
    names = [e["name"] for e in cfg["eval_models"]]
    assert set(doc["headline"]["by_model"]) == set(names)
    groups = {a["group"] for a in doc["aggregates"]}
    assert groups == {*cfg["evaluate"]["benchmarks"][0]["groups"]["values"], "All", "All (pooled)"}
    pairs, _ = pair_models(cfg["eval_models"])
    compared = {(c["model"], c["base"]) for c in doc["comparisons"]}
    assert compared == {(p.model, p.base) for p in pairs}
    comparison = pl.read_parquet(mcq / "comparison.parquet")
    assert comparison.height == len(doc["comparisons"])
    md = (mcq / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# blend-mcq") and all(f"| {m} |" in md for m in names)


def test_cli_scores_the_workflows_responses_the_same(cfg: dict, mcq: Path, tmp_path: Path) -> None:
    model = cfg["eval_models"][0]["name"]
    out = tmp_path / "scores.parquet"
    rc = main(
        [
            "score", "--benchmark", "blend-mcq", "--items", str(mcq / "items.parquet"),
            "--responses", str(mcq / model / "responses.parquet"), "--model", model,
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    assert pl.read_parquet(out).equals(pl.read_parquet(mcq / model / "scores.parquet"))


def test_drops_reach_the_report_and_the_summary(demo_run: Path) -> None:
    drops = pl.read_parquet(demo_run / "results" / "report" / "drops.parquet")
    assert {"benchmark_generate", "benchmark_score"} <= set(drops["stage"])
    text = (demo_run / "results" / "summary.md").read_text(encoding="utf-8")
    assert "## Benchmarks (macro mean over groups)" in text and "| blend-mcq |" in text
