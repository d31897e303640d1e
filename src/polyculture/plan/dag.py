"""The jobs of a run as Snakemake plans them: a `snakemake --dry-run` of the workflow with the
given profile, its printed jobs parsed (rule, wildcards, files, resources), and the cluster
submissions they make (localrules make none; the profile's groups make several jobs one).

A subprocess rather than Snakemake's Python API: the profile (YAML with yte definitions that set
the placement environment, groups, default resources) is read by Snakemake's command line only,
and the dry run prints every job's evaluated resources (`runtime`, `gpu`, the partition)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyculture.errors import PolycultureError
from polyculture.placement import LOCALRULES_MARK, PLANNING_ENV

#: Set in the dry run's environment so that the workflow's budget check does not plan again.


@dataclass
class Job:
    """One job of the dry run."""

    rule: str
    jobid: int
    wildcards: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)
    #: The group job it runs in (one cluster submission), None for a job of its own.
    group: int | None = None
    #: Runs in the Snakemake process (printed as a `localrule`, or made local by the workflow
    #: from the site block: a network job on the submit host).
    local: bool = False

    @property
    def gpus(self) -> int:
        """The GPUs the job books (its `gpu` resource; 0 without one)."""
        value = self.resources.get("gpu", "0")
        return int(value) if value.isdigit() else 0

    @property
    def runtime_min(self) -> float | None:
        """Its runtime limit in minutes on the first try, None where the profile sets none."""
        value = self.resources.get("runtime")
        return float(value) if value and value.replace(".", "", 1).isdigit() else None


def snakemake_command() -> list[str]:
    """The snakemake of this Python environment."""
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


#: One profile directory, several (later ones over earlier ones, as snakemake takes them), or
#: None for a local run.
Profiles = str | Sequence[str] | None


def profile_list(profile: Profiles) -> list[str]:
    """The profile directories as a list."""
    if not profile:
        return []
    return [profile] if isinstance(profile, str) else list(profile)


def dry_run(
    workdir: Path,
    configfiles: Sequence[Path],
    profile: Profiles,
    forceall: bool = False,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    """The text of `snakemake --dry-run` in `workdir` (stdout and stderr); fails with the tail of
    Snakemake's output when it fails (a config error names its key there)."""
    cmd = [*snakemake_command(), "--dry-run", "--cores", "1"]
    for name in profile_list(profile) or ["profiles/local"]:
        cmd += ["--profile", name]
    cmd += ["--workflow-profile", "none"]
    if forceall:
        cmd.append("--forceall")
    cmd += [*extra, "--configfile", *map(str, configfiles)]
    full_env = {**os.environ, **(env or {}), PLANNING_ENV: "1"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=full_env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise PolycultureError(f"snakemake --dry-run failed ({proc.returncode}):\n{tail}")
    return out


# A group's members are printed indented by four more spaces.
_GROUP = re.compile(r"^(?:\[.*\] )?Group job (\S+)")
_HEAD = re.compile(r"^(?: {4})?(local)?rule (\w+):$")
_FIELD = re.compile(r"^(?: {4}){1,2}(\w+): (.*)$")


def _pairs(text: str) -> dict[str, str]:
    """`a=1, b=x` as a dict (values may be empty)."""
    pairs = {}
    for part in text.split(", "):
        key, sep, value = part.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def parse_jobs(text: str) -> list[Job]:
    """The jobs a dry run printed, in its order."""
    jobs: list[Job] = []
    current: Job | None = None
    groups = 0
    for line in text.splitlines():
        if _GROUP.match(line):
            groups += 1
            continue
        head = _HEAD.match(line)
        if head:
            current = Job(rule=head.group(2), jobid=-1, local=bool(head.group(1)))
            current.group = groups if line.startswith("    ") else None
            jobs.append(current)
            continue
        m = _FIELD.match(line)
        if current is None or not m:
            continue
        key, value = m.groups()
        if key == "jobid":
            current.jobid = int(value)
        elif key == "input":
            current.inputs = value.split(", ")
        elif key == "output":
            current.outputs = value.split(", ")
        elif key == "wildcards":
            current.wildcards = _pairs(value)
        elif key == "resources":
            current.resources = _pairs(value)
    made_local = announced_localrules(text)
    for job in jobs:
        job.local = job.local or job.rule in made_local
    return [j for j in jobs if j.jobid >= 0]


def local_rules(workdir: Path) -> set[str]:
    """The rules the Snakefile and rules/*.smk declare `localrules:` (run in the Snakemake
    process, no cluster job)."""
    names: set[str] = set()
    for path in [workdir / "Snakefile", *sorted((workdir / "rules").glob("*.smk"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^localrules:\s*\n((?:[ \t]+\S.*\n)+)", text, flags=re.M):
            names.update(re.findall(r"\w+", re.sub(r"#.*", "", block.group(1))))
    return names


def announced_localrules(text: str) -> set[str]:
    """The rules a dry run's workflow made local from the site (placement.announce_localrules)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith(LOCALRULES_MARK):
            names.update(json.loads(line[len(LOCALRULES_MARK) :]))
    return names


@dataclass(frozen=True)
class Profile:
    """What of a profile the plan needs: whether jobs go to a cluster."""

    cluster: bool


def read_profile(workdir: Path, profile: Profiles) -> Profile:
    """Whether the profile directories (relative to `workdir`) submit jobs to a cluster: the
    last `executor` any of them sets is not local; no profile is a local run."""
    executor = "local"
    for name in profile_list(profile):
        path = Path(name) if Path(name).is_absolute() else workdir / name
        if not (path / "config.yaml").is_file():
            raise PolycultureError(f"--profile {name}: no {path / 'config.yaml'}")
        text = (path / "config.yaml").read_text(encoding="utf-8")
        data: dict[str, Any] = yaml.safe_load(text) or {}
        executor = str(data.get("executor", executor))
    return Profile(executor not in ("local", "dryrun"))


def submissions(jobs: Sequence[Job], profile: Profile, local: set[str]) -> dict[str, float]:
    """Cluster submissions per rule: one per job of its own that is no localrule, one per group
    job (the profile's `groups` as Snakemake formed them in the dry run), counted to its members
    in equal shares so that the rules sum to the whole."""
    result: dict[str, float] = defaultdict(float)
    if not profile.cluster:
        return result
    members: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.group is not None:
            members[job.group].append(job)
        elif job.rule not in local and not job.local:
            result[job.rule] += 1
    for group in members.values():
        for job in group:
            result[job.rule] += 1.0 / len(group)
    return result
