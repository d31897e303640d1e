"""Where a job runs, decided per job from what it runs (its GPU count: 0 for an API model, the
Google or memory translator and CPU work; a local model's engine size; `train.gpus` for
training) and the cluster profile's site settings.

profiles/slurm puts its site settings, as JSON, in the environment variable
POLYCULTURE_PLACEMENT (the jobs inherit it through sbatch --export=ALL). A YAML profile cannot
choose a partition from a job's values, and Snakemake decides localrules per rule, not per job,
so the workflow sets the SLURM resources itself: the rules declare `resources: **placed(gpus)`.
Without the variable (profiles/local) a job's resources are its GPU count alone.

Network jobs (an API model, the Google translator: ModelSpec.needs_network) run where the network
is: in the site's `network_partition` where it names one; else, where the site says compute nodes
are offline (`compute_offline`, the default), on the submit host: the rules whose every job needs
the network are made localrules (`network_localrules`; a rule mixing API and local models, the
WVS survey, has an API twin rule for that); else in the CPU partition. Each network job carries
the resource `network=1`, which is what the workflow reads to decide.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

PLACEMENT_ENV = "POLYCULTURE_PLACEMENT"
#: The job groups a cluster profile asks for (rule name → group), as JSON: Snakemake applies its
#: own --groups only after the workflow is parsed and over a rule's group, so the profiles hand
#: them to the workflow, which places them (placed_groups) and sets each rule's group.
GROUPS_ENV = "POLYCULTURE_GROUPS"
#: An overlay's groups (profiles/slurm-small), over those of GROUPS_ENV rule by rule.
PACKED_GROUPS_ENV = "POLYCULTURE_GROUPS_PACKED"
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

#: Optional site keys: a partition whose nodes reach the network ("" or absent: none), and
#: whether compute nodes are offline (absent: true).
NETWORK_KEYS = ("network_partition", "compute_offline")

#: A job's runtime limit of a first try in minutes under a cluster site (`placed`; training 720),
#: doubled on a retry: our choice, a few hours per job, which SLURM partitions commonly allow.
FIRST_TRY_MINUTES = 240

GpuCount = int | Callable[[Any], int]
Flag = bool | Callable[[Any], bool]


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


def site_groups(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job groups (rule name → group) of POLYCULTURE_GROUPS with POLYCULTURE_GROUPS_PACKED's
    over them, empty where neither is set; fails naming the variable that is no JSON object of
    strings."""
    env = os.environ if environ is None else environ
    groups: dict[str, str] = {}
    for name in (GROUPS_ENV, PACKED_GROUPS_ENV):
        text = env.get(name)
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{name}: not JSON ({exc})") from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError(f"{name}: expected an object of rule name to group name")
        groups.update(value)
    return groups


def _per_job(value: GpuCount) -> Callable[[Any], int]:
    """`value` as a function of the wildcards (a function already, or a constant)."""
    return value if callable(value) else (lambda wildcards: value)


def network_on_submit_host(site: Mapping[str, Any] | None) -> bool:
    """Whether network jobs run on the submit host: under a cluster profile whose site names no
    network partition and says (or leaves at its default) that compute nodes are offline."""
    return (
        bool(site) and not site.get("network_partition") and bool(site.get("compute_offline", True))
    )


def network_partition(site: Mapping[str, Any]) -> str:
    """The partition of a network job without GPUs: the site's network partition, else the
    CPU partition (compute nodes online)."""
    return site.get("network_partition") or site["cpu_partition"]


#: Set in the environment of the dry run `polyculture plan` makes.
PLANNING_ENV = "POLYCULTURE_PLANNING"
#: The line such a dry run prints with the rules the workflow made local (network_localrules),
#: which its job listing does not mark.
LOCALRULES_MARK = "polyculture: localrules made here:"


def announce_localrules(names: list[str], environ: Mapping[str, str] | None = None) -> None:
    """Print the rules made local for `polyculture plan`, in its dry run only."""
    if (os.environ if environ is None else environ).get(PLANNING_ENV):
        print(f"{LOCALRULES_MARK} {json.dumps(sorted(names))}", file=sys.stderr)


def network_localrules(rules: Any, site: Mapping[str, Any] | None) -> list[str]:
    """Names of the rules (Snakemake Rule objects) to run on the submit host: where network jobs
    run there, every rule whose jobs all need the network and no GPU (resources `network` the
    constant 1, `gpu` the constant 0); none otherwise."""
    if not network_on_submit_host(site):
        return []
    return sorted(
        r.name for r in rules if _resource(r, "network") == 1 and _resource(r, "gpu") == 0
    )


def placed(
    gpus: GpuCount,
    site: Mapping[str, Any] | None,
    minutes: int = FIRST_TRY_MINUTES,
    multi_gpu: bool = False,
    network: Flag = False,
) -> dict[str, Any]:
    """Snakemake `resources:` of a job on `gpus` GPUs (a count or a function of the wildcards):
    `gpu`, and with site settings the GPU partition, GPU type and constraint for a job with
    GPUs, the CPU partition and no GPU type for one without, one task (`tasks_per_gpu: 0`:
    else the SLURM plugin makes a task per GPU), CPUs and memory per GPU, `minutes` a try
    (memory doubled on a retry). multi_gpu (training): all GPUs on one node, fixed memory per
    CPU. `network` (a flag or a function of the wildcards): whether the job needs the network;
    such a job without GPUs goes to the network partition (network_partition), and carries
    `network=1` (a constant where the flag is one: the rule is then a localrule where network
    jobs run on the submit host)."""
    count = _per_job(gpus)
    res: dict[str, Any] = {"gpu": gpus}
    if callable(network):
        flag = network
        res["network"] = lambda wildcards: int(bool(flag(wildcards)))
    else:
        flag = _per_job(bool(network))
        res["network"] = int(bool(network))
    if not site:
        return res
    res["slurm_partition"] = lambda wildcards: (
        site["gpu_partition"]
        if count(wildcards)
        else network_partition(site)
        if flag(wildcards)
        else site["cpu_partition"]
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


def _resource(rule: Any, name: str) -> Any:
    """A rule's declared resource `name` (a value, or a function where it differs per job), 0
    where it declares none; Snakemake's Resource objects are unwrapped."""
    value = rule.resources.get(name)  # Snakemake's Resources.get takes no default
    if value is None:
        return 0
    if hasattr(value, "is_evaluable"):  # snakemake.resources.Resource
        return value.evaluate if value.is_evaluable() else value.value
    return value


def _place_of(rule: Any) -> str | None:
    """'gpu', 'network' or 'cpu' for a rule whose GPU count and network flag are constants (the
    same for every job), else None."""
    gpus, network = _resource(rule, "gpu"), _resource(rule, "network")
    if callable(gpus) or callable(network):
        return None
    return "gpu" if gpus else "network" if network else "cpu"


def placed_groups(
    rules: Any, site: Mapping[str, Any] | None, groups: Mapping[str, str]
) -> dict[str, str | None]:
    """Rule name → the job group it keeps, for the rules a profile grouped (`groups`: rule name
    → group, the profile's `groups:`; `rules`: Snakemake Rule objects): one cluster job has one
    placement, so in a group whose rules are placed differently the rules without GPUs move to
    a group of their own (the group name plus `-cpu` or `-network`); a rule that runs on the
    submit host (network_localrules) leaves its group (Snakemake runs no grouped rule locally).
    Rules placed alike, and rules placed per job (a function of the wildcards), keep theirs."""
    local = set(network_localrules(rules, site))
    grouped = [r for r in rules if r.name in groups]
    places: dict[str, set[str]] = {}
    for r in grouped:
        place = _place_of(r)
        if place is not None and r.name not in local:
            places.setdefault(groups[r.name], set()).add(place)
    out: dict[str, str | None] = {}
    for r in grouped:
        group, place = groups[r.name], _place_of(r)
        if r.name in local:
            out[r.name] = None
        elif place is not None and place != "gpu" and len(places.get(group, ())) > 1:
            out[r.name] = f"{group}-{place}"
        else:
            out[r.name] = group
    return out


def job_hours_warnings(config: Mapping[str, Any]) -> list[str]:
    """A warning where `cluster.job_hours` (the target of `auto` shard counts) is not below
    the runtime limit of a first try (FIRST_TRY_MINUTES): a shard sized to it would be killed
    unless the site's resource overrides give its rule more time."""
    hours = (config.get("cluster") or {}).get("job_hours")
    if isinstance(hours, (int, float)) and hours * 60 >= FIRST_TRY_MINUTES:
        return [
            f"cluster.job_hours: {hours} is not below the {FIRST_TRY_MINUTES}-minute runtime "
            "limit of a first try (profiles/slurm); lower it, or raise the rules' runtime in "
            "the site's resource_overrides"
        ]
    return []
