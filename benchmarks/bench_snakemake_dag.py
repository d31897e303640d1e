"""DAG scale: seconds of `snakemake -n` (the whole process: start, config check, DAG) and the
number of planned jobs for both paper presets with all their shards (configs/paper-consensus.yaml:
16 response/embedding shards, 4 models; configs/paper-wvs.yaml: 6 models x 4 languages x 4
survey shards, 4 judge shards), in a temporary copy of the workflow where the input files the
presets name and this repository does not have (CANDLE/CultureAtlas assertions, the WVS joint
file) are empty placeholders, and so are the GOOGLE_API_KEY and OPENAI_API_KEY that the config
check asks of the google translator and of API models where the environment has none (a dry run
never calls an API). Then the
no-op rerun: `snakemake -n` right after a full demo run in the same directory, which should
plan no job. Best of two runs each; target < 10 s each.

Run alone: `.venv/bin/python benchmarks/run.py bench_snakemake_dag` (runs the demo first:
minutes). Named to sort after bench_demo, whose demo run it reuses in a full `make bench`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from workspace import copy_workflow, demo_run, planned_jobs, scratch_dir, snakemake

from polyculture.project import add_placeholders, placeholder_env

PRESETS = ("paper-consensus", "paper-wvs")
REPEATS = 2
TARGET_S = 10.0


def dry_run(
    workdir: Path, *args: str, repeats: int = REPEATS, env: dict[str, str] | None = None
) -> tuple[float, int]:
    """Fewest seconds of `repeats` runs of `snakemake -n *args`, and the jobs it plans."""
    runs = [snakemake(workdir, "-n", *args, env=env) for _ in range(repeats)]
    jobs = {planned_jobs(r.stdout + r.stderr) for r in runs}
    if len(jobs) != 1:
        raise RuntimeError(f"dry runs planned different job counts: {sorted(jobs)}")
    return min(r.seconds for r in runs), jobs.pop()


def preset_figures() -> dict:
    """Dry-run seconds and job counts of both paper presets."""
    figures: dict[str, dict] = {}
    workdir = copy_workflow(scratch_dir("dag"))
    env = placeholder_env(os.environ)
    for preset in PRESETS:
        config = yaml.safe_load((workdir / "configs" / f"{preset}.yaml").read_text("utf-8"))
        made = add_placeholders(workdir, config)
        seconds, jobs = dry_run(workdir, "--configfile", f"configs/{preset}.yaml", env=env)
        name = preset.replace("-", "_")
        figures[f"{name}_seconds"] = {
            "value": round(seconds, 2),
            "unit": "s",
            "compares": f"snakemake -n --configfile configs/{preset}.yaml, best of {REPEATS} "
            f"(target < {TARGET_S:g} s); empty placeholder inputs: {', '.join(made) or 'none'}; "
            f"placeholder environment: {', '.join(sorted(env)) or 'none'}",
        }
        figures[f"{name}_jobs"] = {
            "value": jobs,
            "unit": "jobs",
            "compares": f"jobs planned by the {preset} preset, all shards",
        }
    return figures


def noop_figures() -> dict:
    """Dry-run seconds and job count right after the full demo run, in its directory."""
    demo = demo_run()
    seconds, jobs = dry_run(demo.workdir, "--configfile", "config.yaml")
    return {
        "noop_rerun_seconds": {
            "value": round(seconds, 2),
            "unit": "s",
            "compares": f"snakemake -n after the full demo run ({demo.jobs} jobs) in its "
            f"directory, best of {REPEATS} (target < {TARGET_S:g} s)",
        },
        "noop_rerun_jobs": {
            "value": jobs,
            "unit": "jobs",
            "compares": "jobs the no-op rerun plans (0 expected: nothing out of date)",
        },
    }


def run() -> dict:
    """Both presets' dry runs, then the no-op rerun after the demo."""
    return preset_figures() | noop_figures()


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<26} {fig['value']!s:>10} {fig['unit']:<5} {fig['compares']}")
