"""Where a job runs, decided per job from what it runs (its GPU count: 0 for an API model, the
Google or memory translator and CPU work; a local model's engine size; `train.gpus` for
training) and the cluster profile's site settings.

profiles/slurm puts its site settings, as JSON, in the environment variable
POLYCULTURE_PLACEMENT (the jobs inherit it through sbatch --export=ALL). A YAML profile cannot
choose a partition from a job's values, and Snakemake decides localrules per rule, not per job,
so the workflow sets the SLURM resources itself: the rules declare `resources: **placed(gpus)`.
Without the variable (profiles/local) a job's resources are its GPU count alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

PLACEMENT_ENV = "POLYCULTURE_PLACEMENT"
#: Keys of the site settings (profiles/slurm's site block and per-GPU sizes).
SITE_KEYS = (
    "gpu_partition",
    "cpu_partition",
    "gpu_model",
    "gpu_constraint",
    "gpus_per_node",
    "cpus_per_gpu",
    "mem_mb_per_cpu",
    "threads_per_gpu_job",
)

GpuCount = int | Callable[[Any], int]


def site_placement(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The site settings from POLYCULTURE_PLACEMENT, or None where it is unset; fails naming the
    variable when it is no JSON object of the known keys."""
    text = (os.environ if environ is None else environ).get(PLACEMENT_ENV)
    if not text:
        return None
    try:
        site = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{PLACEMENT_ENV}: not JSON ({exc})") from None
    missing = [k for k in SITE_KEYS if not isinstance(site, dict) or k not in site]
    if missing:
        raise ValueError(f"{PLACEMENT_ENV}: missing {', '.join(missing)}")
    return site


def _per_job(value: GpuCount) -> Callable[[Any], int]:
    """`value` as a function of the wildcards (a function already, or a constant)."""
    return value if callable(value) else (lambda wildcards: value)


def placed(
    gpus: GpuCount,
    site: Mapping[str, Any] | None,
    minutes: int = 240,
    multi_gpu: bool = False,
) -> dict[str, Any]:
    """Snakemake `resources:` of a job on `gpus` GPUs (a count or a function of the wildcards):
    `gpu`, and with site settings the GPU partition, GPU type and constraint for a job with
    GPUs, the CPU partition and no GPU type for one without, one task (`tasks_per_gpu: 0`:
    else the SLURM plugin makes a task per GPU), CPUs and memory per GPU, `minutes` a try
    (memory doubled on a retry). multi_gpu (training): all GPUs on one node, fixed memory per
    CPU."""
    count = _per_job(gpus)
    res: dict[str, Any] = {"gpu": gpus}
    if not site:
        return res
    res["slurm_partition"] = lambda wildcards: (
        site["gpu_partition"] if count(wildcards) else site["cpu_partition"]
    )
    res["gpu_model"] = lambda wildcards: site["gpu_model"] if count(wildcards) else ""
    res["tasks_per_gpu"] = 0
    res["cpus_per_gpu"] = site["cpus_per_gpu"]
    res["runtime"] = lambda wildcards, attempt: minutes * attempt
    if multi_gpu:
        res["nodes"] = 1
        res["mem_mb_per_cpu"] = site["mem_mb_per_cpu"]
    else:
        res["mem_mb_per_cpu"] = lambda wildcards, attempt: site["mem_mb_per_cpu"] * attempt
    if site.get("gpu_constraint"):
        res["constraint"] = lambda wildcards: site["gpu_constraint"] if count(wildcards) else ""
    return res


def placed_threads(gpus: GpuCount, site: Mapping[str, Any] | None) -> Callable[[Any], int]:
    """Snakemake `threads:` of a job on `gpus` GPUs: the site's threads of a GPU job for one
    with GPUs, else one (an API job waits on the network; locally every model job has one)."""
    count = _per_job(gpus)
    per_gpu_job = int(site["threads_per_gpu_job"]) if site else 1
    return lambda wildcards: per_gpu_job if count(wildcards) else 1
