"""The paper presets as a cluster bill: `polyculture plan` of configs/paper-wvs.yaml and
configs/paper-consensus.yaml through profiles/slurm, on the placeholder data of
tests/test_presets.py (BLEnD's real questions from the shared data directory, read in place
through a link, so that BLEnD's work is counted). Figures: submissions, GPU jobs, GPU jobs that
run no local model (goal 0), engine starts per stage (one per GPU job that runs a local model),
GPU-hours booked and busy and their ratio, API dollars.

Issue 26 measured before: paper-wvs 124 submissions, all on the GPU partition, 76 of them API
only; BLEnD 80 engine starts for 5 eval models of one base. Each preset is planned twice: as it
is (`auto` shard counts under `cluster.job_hours`), and with the fixed shard counts the presets
had before (`fixed.*`: wvs.shards 4, wvs.judge_shards 4, consensus.shards 16, no job_hours)."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from workspace import REPO

from polyculture.backends.spec import parse_model_spec
from polyculture.plan import plan_details
from polyculture.plan.work import eval_model_spec
from polyculture.project import add_placeholders, copy_workflow, placeholder_env

PRESETS = ("paper-wvs", "paper-consensus")
BLEND_DATA = REPO.parent / "shared" / "data" / "blend"


def job_model(rule: str, wildcards: dict[str, str], config: dict[str, Any]) -> str | None:
    """The model spec a job of `rule` runs (None: no model, or one the job does not load)."""
    keys = ("model", "blend_engine", "blend_model", "general_model", "bench_engine", "bench_model")
    eval_model = next((wildcards[k] for k in keys if wildcards.get(k)), None)
    if rule in ("wvs_survey", "wvs_survey_api", "blend_generate", "lm_eval", "benchmark_generate"):
        return eval_model_spec(config, eval_model) if eval_model else None
        return eval_model_spec(config, eval_model)
    if rule == "wvs_judge":
        return str(config["wvs"]["judge"])
    if rule.startswith(("translate_", "wvs_translate")):
        tr = config["translator"]
        return str(tr["model"]) if tr.get("kind") in ("llm", "nllb") and tr.get("model") else None
    if rule in ("write_paragraphs", "generate_questions", "sample_responses", "critique"):
        return str(config["consensus"]["generator"])
    if rule == "embed_responses":
        return str(config["consensus"]["embedder"])
    if rule in ("train_lora", "merge_adapter"):
        return str(config["train"]["base_model"])
    return None


#: The shard counts the paper presets had before `auto` (an overlay over each preset).
FIXED_SHARDS = {
    "paper-wvs": {"wvs": {"shards": 4, "judge_shards": 4}, "cluster": {"job_hours": None}},
    "paper-consensus": {"consensus": {"shards": 16}, "cluster": {"job_hours": None}},
}


def preset_figures(
    workdir: Path, name: str, env: dict[str, str], overlay: Path | None = None
) -> dict[str, dict]:
    config_paths = [Path(f"configs/{name}.yaml"), *([overlay] if overlay else [])]
    plan, jobs, full = plan_details(workdir, config_paths, "profiles/slurm", env=env)
    gpu_jobs = [j for j in jobs if j.gpus]
    no_model = []
    engines: Counter[str] = Counter()
    for job in gpu_jobs:
        spec = job_model(job.rule, job.wildcards, full)
        if spec is None or parse_model_spec(spec).is_api:
            no_model.append(job)
        elif job.rule != "train_lora":
            engines[job.rule] += 1
    t = plan["totals"]
    figures = {
        "submissions": {"value": t["submissions"], "unit": "jobs", "compares": "cluster jobs"},
        "gpu_jobs": {"value": len(gpu_jobs), "unit": "jobs", "compares": "jobs booking a GPU"},
        "gpu_jobs_without_local_model": {
            "value": len(no_model),
            "unit": "jobs",
            "compares": "GPU jobs that run no local model (API, Google, CPU work); goal 0",
        },
        "gpu_hours_booked": {
            "value": t["gpu_hours_booked"],
            "unit": "GPU-h",
            "compares": "runtime limit x GPUs, summed (profiles/slurm, first try)",
        },
        "gpu_hours_busy": {
            "value": t["gpu_hours_busy"],
            "unit": "GPU-h",
            "compares": "start-up + tokens / throughput (plan's default table, H200)",
        },
        "busy_over_booked": {
            "value": round(t["gpu_hours_busy"] / t["gpu_hours_booked"], 4)
            if t["gpu_hours_booked"]
            else None,
            "unit": "ratio",
            "compares": "share of the booked GPU time the plan expects busy",
        },
        "api_cost_usd": {
            "value": t["api_cost_usd"],
            "unit": "USD",
            "compares": "API dollars (plan's dated price table)",
        },
    }
    for rule, count in sorted(engines.items()):
        figures[f"engine_starts.{rule}"] = {
            "value": count,
            "unit": "engines",
            "compares": "engine starts of the stage (one per GPU job with a local model)",
        }
    if plan["notes"]:
        figures["notes"] = {
            "value": len(plan["notes"]),
            "unit": "",
            "compares": " | ".join(plan["notes"]),
        }
    prefix = f"{name}.fixed" if overlay else name
    return {f"{prefix}.{k}": v for k, v in figures.items()}


def run() -> dict[str, dict]:
    env = placeholder_env(os.environ)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        workdir = copy_workflow(REPO, Path(tmp) / "wf")
        for name in PRESETS:
            config = yaml.safe_load((workdir / f"configs/{name}.yaml").read_text(encoding="utf-8"))
            add_placeholders(workdir, config)
        if BLEND_DATA.is_dir():  # BLEnD's questions, read in place
            link = workdir / "results" / "evaluate" / "blend" / "data"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(BLEND_DATA)
        for name in PRESETS:
            figures.update(preset_figures(workdir, name, env))
            overlay = workdir / f"{name}-fixed-shards.yaml"
            overlay.write_text(yaml.safe_dump(FIXED_SHARDS[name]), encoding="utf-8")
            figures.update(preset_figures(workdir, name, env, overlay))
    return figures


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<52} {fig['value']!s:>12} {fig['unit']:<8} {fig['compares']}")
