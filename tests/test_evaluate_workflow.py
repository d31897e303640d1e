"""The evaluate stage group in the session's one demo run: BLEnD answers and scores for every
model × country × language × prompt template, lm_eval results, and the comparison outputs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polyculture.blend import run_languages, score_responses

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def cfg(demo_run: Path) -> dict:
    return yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ev(demo_run: Path) -> Path:
    return demo_run / "results" / "evaluate"


def runs(cfg: dict) -> list[tuple[str, str, str]]:
    blend = cfg["evaluate"]["blend"]
    return [
        (c, lang, p)
        for c in blend["countries"]
        for lang in run_languages(c)
        for p in blend["prompts"]
    ]


def models(cfg: dict) -> list[str]:
    return [m["name"] for m in cfg["eval_models"]]


def test_blend_scores_for_every_model_country_language_and_prompt(cfg: dict, ev: Path) -> None:
    expected = sorted(runs(cfg))
    assert {lang for _, lang, _ in expected} > {"en"}  # the demo asks some country locally
    for model in models(cfg):
        scores = pl.read_parquet(ev / "blend" / model / "scores.parquet")
        assert sorted(scores.select("country", "language", "prompt_id").rows()) == expected
        assert (scores["model"] == model).all()
        assert (scores["n_valid"] == 16).all()  # 19 demo questions, 3 left out by the skip rules
        assert scores["sem_b"].is_between(0, 100).all()
        assert (scores["sem_w"] <= scores["sem_b"] + 1e-9).all()
        per_q = pl.read_parquet(ev / "blend" / model / "per_question.parquet")
        assert per_q.height == 19 * len(expected)
        for country in {c for c, _, _ in expected}:
            n_runs = sum(1 for c, _, _ in expected if c == country)
            answers = pl.read_parquet(ev / "blend" / model / "answers" / f"{country}.parquet")
            assert sorted(set(answers.select("language", "prompt_id").rows())) == sorted(
                (lang, p) for c, lang, p in expected if c == country
            )
            assert answers.height == 19 * n_runs and answers["response"].null_count() == 0
            drops = pl.read_parquet(ev / "blend" / model / "drops" / f"{country}.parquet")
            assert drops["total"][0] == 19 * n_runs


def test_cli_scoring_agrees_with_the_workflow(cfg: dict, ev: Path, demo_run: Path) -> None:
    model = models(cfg)[0]
    answers = pl.concat(
        pl.read_parquet(ev / "blend" / model / "answers" / f"{c}.parquet")
        for c in sorted({c for c, _, _ in runs(cfg)})
    ).select("ID", "country", "language", "prompt_id", "response")  # no prompt column: rebuilt
    scores, _ = score_responses(answers, demo_run / cfg["evaluate"]["blend"]["data_path"])
    workflow = pl.read_parquet(ev / "blend" / model / "scores.parquet").drop("model")
    assert scores.equals(workflow)


def test_lm_eval_results_for_every_model(cfg: dict, ev: Path) -> None:
    tasks = {t["task"] for t in cfg["evaluate"]["general"]["tasks"]}
    for model in models(cfg):
        metrics = pl.read_parquet(ev / "general" / model / "metrics.parquet")
        # one row per task: its compared metric (what the alignment stage reads as capability)
        assert sorted(metrics.select("task", "metric").rows()) == sorted(
            (t["task"], t.get("metric", "acc")) for t in cfg["evaluate"]["general"]["tasks"]
        )
        assert set(metrics["task"].to_list()) == tasks
        assert metrics["value"].is_between(0, 1).all()
        items = pl.read_parquet(ev / "general" / model / "items.parquet")
        assert items.filter(pl.col("metric") == "acc").height == 6 * len(
            tasks
        )  # six items per task
        samples = (
            (ev / "general" / model / "samples.jsonl").read_text(encoding="utf-8").splitlines()
        )
        assert len(samples) == 6 * len(tasks)


def test_comparison_outputs(cfg: dict, ev: Path) -> None:
    cmp_dir = ev / "compare"
    blend = pl.read_parquet(cmp_dir / "blend_scores.parquet")
    assert set(blend["model"].to_list()) == set(models(cfg))
    assert {"all", "inst-4", "pers-3"} <= set(blend["prompt_id"].to_list())
    assert set(blend["country"].to_list()) == {
        "All",
        "All (pooled)",
        *cfg["evaluate"]["blend"]["countries"],
    }
    general = pl.read_parquet(cmp_dir / "general_scores.parquet")
    assert {"hellaswag", "global_mmlu"} == set(general["benchmark"].to_list())
    adapters = [m for m in cfg["eval_models"] if m.get("adapter")]
    comparison = pl.read_parquet(cmp_dir / "blend_comparison.parquet")
    general_cmp = pl.read_parquet(cmp_dir / "general_comparison.parquet")
    ablation = pl.read_parquet(cmp_dir / "ablation.parquet")
    # per adapter: each run, each run's mean over templates, and the two summary rows ('All'
    # macro, 'All (pooled)') per language kind (English, local) per template and over all
    n_prompts = len(cfg["evaluate"]["blend"]["prompts"])
    n_runs = len(runs(cfg))
    n_means = n_runs // n_prompts
    assert comparison.height == len(adapters) * (n_runs + n_means + 2 * 2 * (n_prompts + 1))
    # per task, per benchmark (2) the macro mean and the pooled items, and for Global MMLU its
    # culturally sensitive (CS) and agnostic (CA) items apart
    n_tasks = len(cfg["evaluate"]["general"]["tasks"])
    assert general_cmp.height == len(adapters) * (n_tasks + 2 * 2 + 2)
    assert {"all (CS)", "all (CA)"} <= set(general_cmp["task"].to_list())
    assert comparison["p_sem_b"].is_between(0, 1).all()
    variants = [m["adapter"] for m in adapters]
    assert ablation.height == (len(variants) + 1 if variants else 0)
    md = (cmp_dir / "comparison.md").read_text(encoding="utf-8")
    assert md.startswith("# Model comparison") and "## Ablation" in md
    assert "macro mean" in md and "| All (pooled) |" in md
    for fig in ("blend_sem_b.png", "general.png"):
        assert (cmp_dir / fig).read_bytes()[:4] == b"\x89PNG"
