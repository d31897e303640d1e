"""SLURM overhead: wall seconds of the demo run (`snakemake --configfile config.yaml`, tiny models
already built) locally on 2 cores against the same run through the SLURM profile on the
single-node cluster of tests/slurm_cluster.py on the same machine, twice: with the production
profile (`--profile profiles/slurm --profile profiles/slurm-test`) and with the small-jobs overlay
between them (`profiles/slurm-small`, made for configs like the demo's). One run each, in fresh
copies of the workflow with the same tiny models copied in. Target: SLURM <= 1.5x local. The
cluster runs also count their sbatch submissions against the Snakemake jobs they ran
(localrules and job groups make fewer submissions).

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
#: The cluster run's network: none (a hub endpoint that refuses connections, an empty cache).
NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9", "TOKENIZERS_PARALLELISM": "false"}


def busy_core_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # steal: not ours
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def with_models(prefix: str) -> Path:
    """A fresh copy of the workflow holding the tiny models (timestamps kept: not rebuilt)."""
    workdir = copy_workflow(scratch_dir(prefix))
    for name, path in tiny_models().items():
        shutil.copytree(path, workdir / "results" / "models" / name)
    return workdir


def slurm_run(workdir: Path, stack: str, timeout: int = 3600) -> tuple[float, str]:
    """Wall seconds and output of the demo through a stack of SLURM profiles in `workdir`."""
    env = {**os.environ, **NO_NETWORK, "HF_HOME": str(workdir / "hf-cache")}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SLURM_CONF"):
        env.pop(name, None)
    start = time.perf_counter()
    proc = subprocess.run(
        ["timeout", "-k", "20", str(timeout), SNAKEMAKE, *slurm_cluster.profile_args(stack)],
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
    runs = {}
    try:
        tiny_models()  # built (or found) before any timed run
        local_dir = with_models("overhead-local")
        busy = busy_core_seconds()
        local = local_snakemake(local_dir, "--configfile", "config.yaml", timeout=3600)
        local_busy = busy_core_seconds() - busy
        local_jobs = planned_jobs(local.stdout + local.stderr)
        for stack in slurm_cluster.PROFILE_STACKS:
            workdir = with_models(f"overhead-{stack}")
            busy = busy_core_seconds()
            seconds, log = slurm_run(workdir, stack)
            runs[stack] = (seconds, log, busy_core_seconds() - busy)
    finally:
        slurm_cluster.stop(cluster.state_dir)
    out = {
        "local_seconds": {
            "value": round(local.seconds, 1),
            "unit": "s",
            "compares": f"snakemake --cores {CORES} --configfile config.yaml, tiny models "
            f"({', '.join(MODELS)}) built: {local_jobs} jobs",
        },
        "local_busy_core_seconds": {
            "value": round(local_busy, 1),
            "unit": "s",
            "compares": f"CPU seconds the machine was busy during the local run, all "
            f"{os.cpu_count()} cores (/proc/stat): {local_busy / local.seconds:.2f} cores busy "
            "on average",
        },
    }
    for stack, (seconds, log, busy) in runs.items():
        submissions = len(re.findall(r"has been submitted with SLURM jobid", log))
        ran_local = len(re.findall(r"^localrule \S+:$", log, flags=re.M))
        ratio = seconds / local.seconds
        name = "slurm" if stack == "production" else f"slurm_{stack}"
        out[f"{name}_seconds"] = {
            "value": round(seconds, 1),
            "unit": "s",
            "compares": f"the same run through {' '.join(slurm_cluster.profile_args(stack))} "
            f"on the one-node test cluster of this machine: {submissions} sbatch submissions, "
            f"{ran_local} "
            "localrule jobs, network cut off (offline jobs)",
        }
        out[f"{name}_busy_core_seconds"] = {
            "value": round(busy, 1),
            "unit": "s",
            "compares": f"CPU seconds the machine was busy during the {name} run (submit host, "
            f"controller and jobs share its {os.cpu_count()} cores): {busy / seconds:.2f} cores "
            f"busy on average, {busy - local_busy:+.0f} s against the local run",
        }
        out[f"{name}_over_local"] = {
            "value": round(ratio, 2),
            "unit": "x",
            "compares": f"{name}_seconds / local_seconds (target <= {TARGET_RATIO:g}: "
            f"{'met' if ratio <= TARGET_RATIO else 'missed'})",
        }
    return out


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<20} {fig['value']!s:>10} {fig['unit']:<3} {fig['compares']}")
