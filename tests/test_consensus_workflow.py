"""The consensus rules on the demo config, end to end with the tiny models (read from the session's
single demo run), a rerun that has nothing to do, and bad configs rejected before any job."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import run_snakemake

from polyculture.consensus.countries import is_blend_country
from polyculture.consensus.dialogues import check_messages, general_count

pytestmark = pytest.mark.workflow

VARIANTS = ("full", "random_selection", "no_region_filter")


def _records(path: Path) -> list[dict]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@pytest.fixture(scope="module")
def consensus_dir(demo_run: Path) -> Path:
    return demo_run / "results" / "consensus"


def test_train_files_exist_for_all_variants_with_six_turn_dialogues(consensus_dir):
    for variant in VARIANTS:
        records = _records(consensus_dir / variant / "train.jsonl")
        cultural = [r for r in records if r["source"] == "cultural"]
        general = [r for r in records if r["source"] == "general"]
        assert cultural, f"{variant}: no cultural example survived the tiny model"
        for r in records:
            assert set(r) == {"messages", "variant", "region", "language", "question_id", "source"}
            assert r["variant"] == variant
            check_messages(r["messages"], turns=6 if r["source"] == "cultural" else 2)
        assert len(general) == general_count(len(cultural), 3)
        assert abs(len(cultural) - 3 * len(general)) <= 1.5
        if variant != "no_region_filter":
            assert all(is_blend_country(r["region"]) for r in cultural)
        counts = pl.read_parquet(consensus_dir / variant / "counts.parquet")
        assert counts["count"].sum() == len(records)
        md = (consensus_dir / variant / "counts.md").read_text(encoding="utf-8")
        assert f"cultural: {len(cultural)}, general: {len(general)}" in md


def test_variants_share_upstream_files_and_differ_downstream(consensus_dir):
    full = {
        r["question_id"]
        for r in _records(consensus_dir / "full" / "train.jsonl")
        if r["source"] == "cultural"
    }
    open_ = {
        r["question_id"]
        for r in _records(consensus_dir / "no_region_filter" / "train.jsonl")
        if r["source"] == "cultural"
    }
    assert full <= open_  # the same critiques, filtered or not
    for selection in ("consistency", "random"):
        gt = pl.read_parquet(consensus_dir / "selection" / selection / "ground_truth.parquet")
        assert set(gt["selection"]) == {selection}
    cons = pl.read_parquet(consensus_dir / "selection" / "consistency" / "ground_truth.parquet")
    for c_en, c_local, strong in cons.select("c_en", "c_local", "strong_side").iter_rows():
        assert strong == ("en" if c_en > c_local else "local")


def test_every_stage_wrote_its_drop_counts(consensus_dir):
    drops = pl.read_parquet(consensus_dir / "drops.parquet")
    stages = set(drops["stage"])
    assert {
        "ingest_statements",
        "write_paragraphs",
        "generate_questions",
        "translate_questions",
        "embed_responses",
        "score_consistency",
        "translate_ground_truth",
        "critique_knowledge_points",
        "critique_point_checks",
        "critique",
        "build_training_set",
        "general_examples",
    } <= stages
    ingest = drops.filter(pl.col("stage") == "ingest_statements")
    assert set(ingest["reason"]) >= {"combined_score_below_threshold", "subject_type_not_kept"}
    assert (consensus_dir / "drops.md").read_text(encoding="utf-8").startswith("# Consensus")


def test_shards_and_responses(consensus_dir, demo_run):
    config = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))["consensus"]
    shards = sorted((consensus_dir / "responses").glob("shard-*.parquet"))
    assert len(shards) == config["shards"]
    responses = pl.concat([pl.read_parquet(p) for p in shards])
    pairs = pl.read_parquet(consensus_dir / "question_pairs.parquet")
    assert responses.height == pairs.height * 2 * config["samples"]


def test_rerun_has_nothing_to_do(demo_run):
    targets = [f"results/consensus/{v}/train.jsonl" for v in VARIANTS] + [
        "results/consensus/drops.md"
    ]
    proc = run_snakemake(demo_run, "-n", *targets)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"samples": 1}, "samples"),
        ({"variants": {"full": {"selection": "best", "region_filter": True}}}, "selection"),
        ({"general": {"languages": ["xx"]}}, "languages"),
    ],
)
def test_bad_consensus_config_is_rejected_before_any_job(demo_workdir, tmp_path, override, key):
    base = yaml.safe_load((demo_workdir / "config.yaml").read_text(encoding="utf-8"))
    base["consensus"] = {**base["consensus"], **override}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base, allow_unicode=True), encoding="utf-8")
    proc = run_snakemake(demo_workdir, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


def test_critiques_follow_culfits_steps(consensus_dir):
    """The demo's default critique method: knowledge points of g*, their check, the critique."""
    import json

    for path in (consensus_dir / "selection").glob("*/critiques.parquet"):
        table = pl.read_parquet(path)
        for points, checks in table.select("knowledge_points", "point_checks").iter_rows():
            points, checks = json.loads(points), json.loads(checks)
            assert 1 <= len(points) <= 2  # config.yaml: culfit.max_knowledge_points 2
            assert [c["point"] for c in checks] == points
            assert {c["verdict"] for c in checks} <= {
                "covered",
                "partly covered",
                "missing",
                "contradicted",
            }
