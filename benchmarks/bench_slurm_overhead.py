"""SLURM overhead: wall seconds of the demo run (`snakemake --configfile config.yaml`, tiny models
already built) locally on 2 cores against the same run through the SLURM profile
(`--profile profiles/slurm --profile profiles/slurm-test`) on the single-node cluster of
tests/slurm_cluster.py on the same machine, one run each, in fresh copies of the workflow with the
same tiny models copied in. Target: SLURM <= 1.5x local. The cluster run also counts its sbatch
submissions against the Snakemake jobs it ran (localrules and job groups make fewer submissions).

The cluster needs root and slurm-wlm/munge (installed with apt-get where missing); without them
this benchmark records `skipped` with the reason.

Run alone: `.venv/bin/python benchmarks/run.py bench_slurm_overhead` (minutes: two demo runs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from workspace import (
    CORES,
    MODELS,
    REPO,
    SNAKEMAKE,
    copy_workflow,
    planned_jobs,
    scratch_dir,
    tiny_models,
)
from workspace import snakemake as local_snakemake

sys.path.insert(0, str(REPO / "tests"))
import slurm_cluster  # noqa: E402  (tests/slurm_cluster.py: start/stop a one-node cluster)

TARGET_RATIO = 1.5
SLURM_ARGS = (
    "--profile",
    "profiles/slurm",
    "--profile",
    "profiles/slurm-test",
    "--workflow-profile",
    "none",
)
#: The cluster run's network: none (a hub endpoint that refuses connections, an empty cache).
NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9", "TOKENIZERS_PARALLELISM": "false"}


def with_models(prefix: str) -> Path:
    """A fresh copy of the workflow holding the tiny models (timestamps kept: not rebuilt)."""
    workdir = copy_workflow(scratch_dir(prefix))
    for name, path in tiny_models().items():
        shutil.copytree(path, workdir / "results" / "models" / name)
    return workdir


def slurm_run(workdir: Path, timeout: int = 3600) -> tuple[float, str]:
    """Wall seconds and output of the demo through the SLURM profile in `workdir`."""
    env = {**os.environ, **NO_NETWORK, "HF_HOME": str(workdir / "hf-cache")}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SLURM_CONF"):
        env.pop(name, None)
    start = time.perf_counter()
    proc = subprocess.run(
        ["timeout", "-k", "20", str(timeout), SNAKEMAKE, *SLURM_ARGS],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"the demo through SLURM failed ({proc.returncode}):\n{out[-6000:]}")
    return seconds, out


def run() -> dict:
    try:
        slurm_cluster.install()
        state = scratch_dir("slurm-state")
        cluster = slurm_cluster.start(state)
    except slurm_cluster.SlurmUnavailable as exc:
        return {"skipped": {"value": None, "unit": "", "compares": f"no SLURM here: {exc}"}}
    try:
        tiny_models()  # built (or found) before either timed run
        local_dir = with_models("overhead-local")
        local = local_snakemake(local_dir, "--configfile", "config.yaml", timeout=3600)
        local_jobs = planned_jobs(local.stdout + local.stderr)
        slurm_dir = with_models("overhead-slurm")
        slurm_seconds, out = slurm_run(slurm_dir)
    finally:
        slurm_cluster.stop(cluster.state_dir)
    submissions = len(re.findall(r"has been submitted with SLURM jobid", out))
    ran_local = len(re.findall(r"^localrule \S+:$", out, flags=re.M))
    ratio = slurm_seconds / local.seconds
    return {
        "local_seconds": {
            "value": round(local.seconds, 1),
            "unit": "s",
            "compares": f"snakemake --cores {CORES} --configfile config.yaml, tiny models "
            f"({', '.join(MODELS)}) built: {local_jobs} jobs",
        },
        "slurm_seconds": {
            "value": round(slurm_seconds, 1),
            "unit": "s",
            "compares": f"the same run through {' '.join(SLURM_ARGS[:4])} on the one-node test "
            f"cluster of this machine: {submissions} sbatch submissions, {ran_local} localrule "
            "jobs, network cut off (offline jobs)",
        },
        "slurm_over_local": {
            "value": round(ratio, 2),
            "unit": "x",
            "compares": f"slurm_seconds / local_seconds (target <= {TARGET_RATIO:g}: "
            f"{'met' if ratio <= TARGET_RATIO else 'missed'})",
        },
    }


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<20} {fig['value']!s:>10} {fig['unit']:<3} {fig['compares']}")
