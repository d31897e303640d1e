"""Network jobs run where the network is (polyculture.placement), and job groups follow placement:
the placement functions on plain rule records, then dry runs through profiles/slurm: the
paper-wvs preset's API jobs book no GPU and run on the submit host (localrules) by default, or
in the site's network partition; the slurm-small overlay packs a config with the Google
translator; merge_adapter books its base model's GPUs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.placement import (
    network_localrules,
    network_on_submit_host,
    placed,
    placed_groups,
    site_groups,
)
from polyculture.project import add_placeholders, placeholder_env

SITE = {
    "gpu_partition": "gpu",
    "cpu_partition": "cpu",
    "gpu_model": "h200",
    "gpu_constraint": "",
    "gpus_per_node": None,
    "cpus_per_gpu": 8,
    "mem_mb_per_cpu": 8000,
    "threads_per_gpu_job": 8,
}
W = SimpleNamespace()


def rule(name: str, gpu, network=0) -> SimpleNamespace:
    return SimpleNamespace(name=name, resources={"gpu": gpu, "network": network})


def test_network_jobs_go_to_the_network_partition_or_the_submit_host() -> None:
    res = placed(0, SITE, network=True)
    assert res["network"] == 1 and res["slurm_partition"](W) == "cpu"
    net = {**SITE, "network_partition": "net"}
    assert placed(0, net, network=True)["slurm_partition"](W) == "net"
    assert placed(0, net)["slurm_partition"](W) == "cpu"
    assert placed(1, net, network=True)["slurm_partition"](W) == "gpu"  # GPUs win
    per_job = placed(0, net, network=lambda w: w.api)
    assert callable(per_job["network"])
    assert per_job["slurm_partition"](SimpleNamespace(api=True)) == "net"
    assert per_job["slurm_partition"](SimpleNamespace(api=False)) == "cpu"
    assert placed(0, None, network=True) == {"gpu": 0, "network": 1}
    assert network_on_submit_host(SITE)
    assert not network_on_submit_host(net)
    assert not network_on_submit_host({**SITE, "compute_offline": False})
    assert not network_on_submit_host(None)  # profiles/local: everything is local anyway
    rules = [
        rule("judge", 0, 1),
        rule("survey", lambda w: 1, lambda w: 1),
        rule("gpu", 1),
        rule("questions", 1, 1),  # a local model and the Google translator: GPU partition
    ]
    assert network_localrules(rules, SITE) == ["judge"]  # never a GPU rule on the submit host
    assert network_localrules(rules, net) == []


def test_groups_follow_placement() -> None:
    rules = [
        rule("paragraphs", 1),
        rule("translate", 0, 1),
        rule("lookup", 0),
        rule("sample", 1),
        rule("api_judge", 0, 1),
        rule("blend", lambda w: 1),
        rule("builds_a", 0),
        rule("builds_b", 0),
    ]
    groups = {
        "paragraphs": "chain",
        "translate": "chain",
        "lookup": "chain",
        "sample": "chain",
        "api_judge": "judge_{model}",
        "blend": "evaluate_{model}",
        "builds_a": "builds",
        "builds_b": "builds",
    }
    net = {**SITE, "network_partition": "net"}
    assert placed_groups(rules, net, groups) == {
        **groups,
        "translate": "chain-network",
        "lookup": "chain-cpu",
    }
    # on the submit host the network rules leave their groups
    on_host = placed_groups(rules, SITE, groups)
    assert on_host["translate"] is None and on_host["api_judge"] is None
    assert on_host["lookup"] == "chain-cpu" and on_host["builds_a"] == "builds"
    env = {
        "POLYCULTURE_GROUPS": json.dumps({"a": "x", "b": "y"}),
        "POLYCULTURE_GROUPS_PACKED": json.dumps({"b": "z"}),
    }
    assert site_groups(env) == {"a": "x", "b": "z"}
    with pytest.raises(ValueError, match="POLYCULTURE_GROUPS_PACKED: expected an object"):
        site_groups({"POLYCULTURE_GROUPS_PACKED": "[1]"})


# ---------------------------------------------------------------- dry runs through the profiles

PROBE = (
    'include: "Snakefile"\n'
    "import json as _json\n"
    'print("LOCAL_RULES " + _json.dumps(sorted(workflow._localrules)))\n'
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("network"))
    (work / "probe.smk").write_text(PROBE, encoding="utf-8")
    return work


def dry_run(work: Path, config: str, *profiles: str, env: dict | None = None):
    """(jobs: rule → list of resource strings, localrules) of a dry run through `profiles`."""
    args = [a for p in profiles for a in ("--profile", p)]
    proc = run_snakemake(
        work,
        "-s",
        "probe.smk",
        "all",  # the included Snakefile's default target is not the probe's
        "-n",
        *args,
        "--workflow-profile",
        "none",
        "--configfile",
        config,
        env=env,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    jobs: dict[str, list[str]] = {}
    for job in re.split(r"\n(?=\[.*\]\n(?:local)?rule \w+:)", out):
        m = re.search(r"^(?:local)?rule (\w+):", job, flags=re.M)
        res = re.search(r"resources: (.*)", job)
        if m and res:
            jobs.setdefault(m.group(1), []).append(res.group(1))
    local = set(json.loads(re.search(r"^LOCAL_RULES (.*)$", out, flags=re.M).group(1)))
    return jobs, local, out


def preset_env(work: Path, preset: str) -> dict:
    config = yaml.safe_load((work / preset).read_text(encoding="utf-8"))
    add_placeholders(work, config)
    return placeholder_env(os.environ)


API_RULES = ("wvs_survey_api", "wvs_judge", "wvs_translate_prompts")


def test_paper_wvs_api_jobs_book_no_gpu_and_run_on_the_submit_host(work: Path) -> None:
    jobs, local, out = dry_run(
        work,
        "configs/paper-wvs.yaml",
        "profiles/slurm",
        env=preset_env(work, "configs/paper-wvs.yaml"),
    )
    # one survey job per OpenAI eval model (every language; `auto` shards), one judge job per
    # eval model (6), one translation per language (4)
    assert {r: len(jobs[r]) for r in API_RULES} == {
        "wvs_survey_api": 3,
        "wvs_judge": 6,
        "wvs_translate_prompts": 4,
    }, out[-3000:]
    for r in API_RULES:
        assert all("gpu=0," in res and "network=1" in res for res in jobs[r]), r
    assert set(API_RULES) <= local
    # the Gemma surveys keep their GPU, on the GPU partition, as cluster jobs: one engine each
    assert len(jobs["wvs_survey"]) == 3 and "wvs_survey" not in local
    assert all("gpu=1," in res and "slurm_partition=gpu" in res for res in jobs["wvs_survey"])
    gpu_jobs = [res for rs in jobs.values() for res in rs if re.search(r"\bgpu=[1-9]", res)]
    assert len(gpu_jobs) == 3  # only the local models' surveys book a GPU


def test_paper_wvs_api_jobs_in_the_sites_network_partition(work: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("network_partition: web\n", encoding="utf-8")
    env = {**preset_env(work, "configs/paper-wvs.yaml"), "POLYCULTURE_SITE": str(site)}
    jobs, local, _ = dry_run(work, "configs/paper-wvs.yaml", "profiles/slurm", env=env)
    assert not set(API_RULES) & local
    for r in API_RULES:
        assert all("slurm_partition=web" in res and "gpu=0," in res for res in jobs[r]), r


def test_small_overlay_packs_a_google_translator_config_and_merge_books_its_models_gpus(
    work: Path,
) -> None:
    config = yaml.safe_load((work / "config.yaml").read_text(encoding="utf-8"))
    config["translator"] = {"kind": "google"}
    config["train"]["merge"] = ["full"]
    config.setdefault("backend", {}).setdefault("models", {})["builtin:tiny-chat"] = {
        "vllm": {"tensor_parallel_size": 2}
    }
    (work / "google.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {"GOOGLE_API_KEY": "placeholder"}
    jobs, local, out = dry_run(
        work, "google.yaml", "profiles/slurm", "profiles/slurm-small", env=env
    )
    translate = {"translate_questions", "translate_requests", "translate_ground_truth"}
    assert translate | {"wvs_translate_prompts"} <= local
    for r in translate:
        assert all("gpu=0," in res for res in jobs[r]), r
    assert "Group job consensus_responses" in out
    # merge_adapter: the base model's engine size (tensor parallel 2), not a fixed one GPU
    # (profiles/slurm alone: the overlay counts one GPU per packed job and caps requests at it)
    jobs, _, _ = dry_run(work, "google.yaml", "profiles/slurm", env=env)
    assert jobs["merge_adapter"] and all("gpu=2," in res for res in jobs["merge_adapter"])
