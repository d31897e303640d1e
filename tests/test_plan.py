"""`polyculture plan`: the paper presets' plans through profiles/slurm (one dry run each, on the
placeholder data of tests/test_presets.py), the JSON shape, the budget refusal of the workflow,
and bad input (a price table without the model, a config that fails the check, more GPUs than a
node has)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.cli import main
from polyculture.config_check import config_warnings
from polyculture.errors import ConfigError, PolycultureError
from polyculture.plan import (
    budget_problems,
    check_budget,
    checked_config,
    plan_details,
    plan_run,
)
from polyculture.plan.dag import Job, Profile, parse_jobs, submissions
from polyculture.plan.tables import DEFAULT_PRICES, cost_usd, params_billions
from polyculture.plan.tokens import TokenCounter
from polyculture.plan.work import Context, job_work, shard_count, stage_hours
from polyculture.project import add_placeholders, placeholder_env

WVS = "configs/paper-wvs.yaml"
CONSENSUS = "configs/paper-consensus.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = copy_workflow(tmp_path_factory.mktemp("plan"))
    for preset in (WVS, CONSENSUS):
        add_placeholders(d, yaml.safe_load((d / preset).read_text(encoding="utf-8")))
    return d


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return placeholder_env(os.environ)


@pytest.fixture(scope="module")
def wvs_plan(workdir: Path, env: dict[str, str]) -> dict:
    return plan_run(workdir, [Path(WVS)], "profiles/slurm", env=env)


def test_json_shape_and_the_wvs_bill(
    workdir: Path,
    wvs_plan: dict,
    env: dict[str, str],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = {r["rule"]: r for r in wvs_plan["rules"]}
    assert set(wvs_plan["totals"]) == {
        "submissions",
        "gpu_hours_booked",
        "gpu_hours_busy",
        "api_cost_usd",
    }
    for r in wvs_plan["rules"]:
        assert set(r) == {
            "rule",
            "jobs",
            "submissions",
            "gpus_per_job",
            "gpu_hours_booked",
            "gpu_hours_busy",
        }
    for a in wvs_plan["api"]:
        assert set(a) == {"model", "rule", "requests", "input_tokens", "output_tokens", "cost_usd"}
    survey, api_survey = rules["wvs_survey"], rules["wvs_survey_api"]
    # one job per model (every language, `auto` shards under cluster.job_hours 3): the 3 Gemma
    # models' jobs book a GPU each, 240 min; the 3 OpenAI models' jobs are wvs_survey_api, run
    # on the submit host (no submission)
    assert survey["jobs"] == 3 and survey["submissions"] == 3
    assert survey["gpus_per_job"] == 1 and survey["gpu_hours_booked"] == 3 * 4.0
    assert 0 < survey["gpu_hours_busy"] < survey["gpu_hours_booked"]
    assert api_survey["jobs"] == 3 and api_survey["submissions"] == 0
    assert api_survey["gpus_per_job"] == 0 and api_survey["gpu_hours_booked"] == 0
    api_rules = {a["rule"] for a in wvs_plan["api"]}
    assert {"wvs_survey_api", "wvs_judge", "wvs_translate_prompts"} <= api_rules
    # the judge is an API model: no GPU, 300 prompts x 4 languages x 10 items per survey model
    assert rules["wvs_judge"]["gpu_hours_booked"] == 0 and rules["wvs_judge"]["gpus_per_job"] == 0
    judge = {(a["model"], a["rule"]): a for a in wvs_plan["api"]}[("gpt-4.1", "wvs_judge")]
    assert judge["requests"] == 6 * 300 * 4 * 10
    assert judge["output_tokens"] == judge["requests"] * 16
    expected = (judge["input_tokens"] * 2.0 + judge["output_tokens"] * 8.0) / 1e6
    assert judge["cost_usd"] == pytest.approx(expected, abs=0.01)
    # the English prompts need no translation; the other three languages 300 requests each
    tr = {a["rule"]: a for a in wvs_plan["api"] if a["model"] == "gpt-3.5-turbo-0125"}
    assert tr["wvs_translate_prompts"]["requests"] == 900
    assert wvs_plan["totals"]["submissions"] == sum(r["submissions"] for r in wvs_plan["rules"])
    # the command prints the table and writes the same JSON
    monkeypatch.chdir(workdir)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = workdir / "plan.json"
    assert (
        main(["plan", "--configfile", WVS, "--profile", "profiles/slurm", "--json", str(out)]) == 0
    )
    assert "wvs_survey" in capsys.readouterr().out
    assert json.loads(out.read_text())["totals"] == wvs_plan["totals"]


def test_budget_names_the_stages(wvs_plan: dict) -> None:
    problems = budget_problems(wvs_plan, {"max_gpu_hours": 10, "max_api_usd": 1})
    assert problems[0].startswith("plan.max_gpu_hours") and "wvs_survey 12.0" in problems[0]
    assert problems[1].startswith("plan.max_api_usd") and "wvs_judge $" in problems[1]
    assert budget_problems(wvs_plan, {"max_gpu_hours": 1000, "max_api_usd": 1000}) == []


def test_the_workflow_refuses_a_run_over_budget(workdir: Path, env: dict[str, str]) -> None:
    budget = workdir / "budget.yaml"
    budget.write_text("plan: {max_gpu_hours: 5}\n", encoding="utf-8")
    args = ["-n", "--profile", "profiles/slurm", "--workflow-profile", "none"]
    proc = run_snakemake(
        workdir, *args, "--configfile", WVS, str(budget), env=env, check=False, timeout=300
    )
    assert proc.returncode != 0
    assert "plan.max_gpu_hours" in proc.stderr and "wvs_survey 12.0" in proc.stderr
    assert "plan_override=true" in proc.stderr
    # the override (a string, as --config gives it) skips the check without planning
    config = {"plan": {"max_gpu_hours": 5}, "plan_override": "true"}
    assert check_budget(config, workdir, [WVS], ["snakemake"], environ={}) == []


def test_a_price_table_without_the_model_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"plan\.prices\.gpt-9"):
        cost_usd(DEFAULT_PRICES, "gpt-9", 10, 10)
    assert cost_usd({"m": {"input_per_mtok": 1, "output_per_mtok": 2}}, "m", 10**6, 10**6) == 3


def test_a_config_that_fails_the_check_is_not_planned(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("seed: 1\nplan: {max_gpu_hours: -1}\n", encoding="utf-8")
    with pytest.raises(PolycultureError, match=r"plan\.max_gpu_hours"):
        plan_run(workdir, [bad], "profiles/slurm")


def test_more_gpus_than_a_node_has_names_the_key(workdir: Path, env: dict[str, str]) -> None:
    site = workdir / "site.yaml"
    site.write_text("gpus_per_node: 4\n", encoding="utf-8")
    with pytest.raises(PolycultureError, match=r"train\.gpus"):
        plan_run(
            workdir, [Path(CONSENSUS)], "profiles/slurm", env={**env, "POLYCULTURE_SITE": str(site)}
        )


def test_group_jobs_are_one_submission_and_localrules_none() -> None:
    text = """
rule a:
    input: x
    output: y
    jobid: 1
    resources: gpu=1, runtime=60
Shell command: None
[Mon Dec  7 21:12:55 2026] Group job g (jobs in lexicogr. order):

    [Mon Dec  7 21:12:55 2026]
    rule b:
        output: p
        jobid: 2
        resources: gpu=1, runtime=60

    [Mon Dec  7 21:12:55 2026]
    rule c:
        input: p
        jobid: 3
        resources: gpu=1, runtime=60
rule d:
    jobid: 4
"""
    jobs = parse_jobs(text)
    assert [j.rule for j in jobs] == ["a", "b", "c", "d"]
    assert jobs[0].gpus == 1 and jobs[0].runtime_min == 60 and jobs[1].group == jobs[2].group
    subs = submissions(jobs, Profile(True), local={"d"})
    assert dict(subs) == {"a": 1, "b": 0.5, "c": 0.5}
    assert submissions([Job("a", 1)], Profile(False), set()) == {}


def test_model_sizes_from_names() -> None:
    assert params_billions("google/gemma-2-27b-it") == 27
    assert params_billions("Qwen/Qwen3-Embedding-0.6B") == 0.6
    assert params_billions("meta-llama/Llama-3.1-8B-Instruct") == 8
    assert params_billions("builtin:tiny-chat") == 1


def test_the_plan_of_a_finished_demo_counts_what_it_ran(demo_run: Path) -> None:
    """Planned again with every job (--forceall, locally), the demo's requests per job are the
    rows its jobs wrote: BLEnD's and the folder benchmark's answers (an engine job's: every
    model it serves), the consensus samples, the judged summaries; only the stages the plan
    does not estimate are named as unknown."""
    import polars as pl

    plan, jobs, _ = plan_details(demo_run, [Path("config.yaml")], None, forceall=True)
    assert plan["totals"]["submissions"] == 0 and plan["api"] == []
    unknown = next(n for n in plan["notes"] if n.startswith("work unknown"))
    assert set(unknown.split(": ")[1].split(", ")) <= {
        "lm_eval",
        "train_lora",
        "translate_requests",
    }
    # the tiny base model and its three adapters: one engine job per generating stage
    engines = [j.rule for j in jobs if j.rule in ("blend_generate", "benchmark_generate")]
    assert sorted(engines) == ["benchmark_generate", "blend_generate"]
    ctx = Context(checked_config([Path("config.yaml")], demo_run), demo_run, TokenCounter())
    results = demo_run / "results"
    for job in jobs:
        if job.rule in ("blend_generate", "benchmark_generate"):  # one engine: all its models
            work = job_work(job, ctx)
            answers = pl.read_parquet(results / job.outputs[0].removeprefix("results/"))
            assert work is not None and work.requests == answers.height, job.wildcards
        if job.rule in ("sample_responses", "wvs_judge"):  # a row per request
            work = job_work(job, ctx)
            shard = pl.read_parquet(results / job.outputs[0].removeprefix("results/"))
            assert work is not None and work.requests == shard.height, job.wildcards


def test_auto_shards_follow_the_estimated_hours(workdir: Path, env: dict[str, str]) -> None:
    """`auto`: one job per model and stage, ceil(estimated hours / cluster.job_hours) where that
    is longer; a number as it is; one for an API model, without a GPU kind or a target."""
    config = checked_config([Path(WVS)], workdir, environ=env)
    gemma = "gemma-2-27b-it"
    hours = stage_hours(config, workdir, "wvs.shards", gemma, "h200")
    assert hours > stage_hours(config, workdir, "wvs.shards", "gemma-2-2b-it", "h200") > 0
    assert shard_count(config, workdir, "wvs.shards", gemma, "h200") == 1  # job_hours 3
    small = {**config, "cluster": {"job_hours": hours / 2.5}}
    assert shard_count(small, workdir, "wvs.shards", gemma, "h200") == 3
    assert shard_count(small, workdir, "wvs.shards", gemma, None) == 1
    assert shard_count(small, workdir, "wvs.shards", "gpt-4o", "h200") == 1
    assert shard_count(small, workdir, "wvs.judge_shards", gemma, "h200") == 1  # an API judge
    none = {**config, "cluster": {"job_hours": None}}
    assert shard_count(none, workdir, "wvs.shards", gemma, "h200") == 1
    fixed = {**small, "wvs": {**config["wvs"], "shards": 4}}
    assert shard_count(fixed, workdir, "wvs.shards", gemma, "h200") == 4
    with pytest.raises(ConfigError, match=r"wvs\.shards"):
        shard_count(
            {**config, "wvs": {**config["wvs"], "shards": "many"}},
            workdir,
            "wvs.shards",
            gemma,
            "h200",
        )

    # a target at or over the first try's runtime limit (240 minutes) is warned about
    assert config_warnings({**config, "cluster": {"job_hours": 3}}) == []
    (warning,) = config_warnings({**config, "cluster": {"job_hours": 4}})
    assert warning.startswith("cluster.job_hours: 4") and "240-minute" in warning

    # the workflow splits the jobs as computed (the job's files, the plan's count of its work)
    short = workdir / "short.yaml"
    short.write_text(f"cluster: {{job_hours: {hours / 2.5}}}\n", encoding="utf-8")
    plan, jobs, _ = plan_details(workdir, [Path(WVS), short], "profiles/slurm", env=env)
    survey = [j for j in jobs if j.rule == "wvs_survey" and j.wildcards["model"] == gemma]
    assert sorted(j.wildcards["shard"] for j in survey) == ["0", "1", "2"]
    assert all(len(j.outputs) == len(config["wvs"]["languages"]) for j in survey)
    ctx = Context(small, workdir, TokenCounter())
    prompts = sum(job_work(j, ctx).requests for j in survey)  # type: ignore[union-attr]
    assert prompts == 300 * len(config["wvs"]["languages"])


def test_a_benchmark_engine_job_counts_the_items_of_every_model_it_serves(
    tmp_path: Path,
) -> None:
    """benchmark_generate runs one engine per base model: its work is the benchmark's items
    once per eval model the engine serves (the demo's base model and its three adapters), the
    output tokens measured from earlier responses once every model has them."""
    import polars as pl

    work = copy_workflow(tmp_path / "wf")
    ctx = Context(checked_config([Path("config.yaml")], work), work, TokenCounter())
    mcq = work / "results" / "evaluate" / "blend-mcq"
    mcq.mkdir(parents=True)
    prompts = ["Which one? A. tea B. coffee", "Which city? A. Athens B. Seoul C. Leeds"]
    pl.DataFrame({"item_id": ["a", "b"], "group": ["US", "UK"], "prompt": prompts}).write_parquet(
        mcq / "items.parquet"
    )
    job = Job("benchmark_generate", 1, {"benchmark": "blend-mcq", "bench_engine": "tiny-chat"})
    models = ["tiny-chat", "tiny-chat-full", "tiny-chat-random", "tiny-chat-noregion"]
    planned = job_work(job, ctx)
    assert planned is not None and planned.model == "builtin:tiny-chat"
    assert planned.requests == 2 * len(models) and not planned.measured_output
    assert planned.output_tokens == planned.requests * 32  # blend-mcq's max_new_tokens
    for m in models:
        (mcq / m).mkdir()
        pl.DataFrame({"response": ['{"answer_choice": "A"}'] * 2}).write_parquet(
            mcq / m / "responses.parquet"
        )
    measured = job_work(job, ctx)
    assert measured is not None and measured.measured_output
    assert measured.input_tokens == planned.input_tokens
    assert measured.output_tokens < planned.output_tokens
