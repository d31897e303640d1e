"""`polyculture plan`: what a run will book and cost before it starts (see bill.py); the
budget check the workflow runs at parse time (:func:`check_budget`)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyculture.errors import PolycultureError
from polyculture.plan.bill import budget_problems, format_plan, make_plan, plan_json
from polyculture.plan.dag import PLANNING_ENV, Job, Profiles, dry_run, parse_jobs, read_profile
from polyculture.plan.tokens import TokenCounter
from polyculture.plan.work import Context

__all__ = [
    "PLANNING_ENV",
    "budget_problems",
    "check_budget",
    "checked_config",
    "format_plan",
    "plan_details",
    "plan_json",
    "plan_run",
]


def checked_config(
    configfiles: Sequence[Path],
    workdir: Path,
    basedir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The merged config with every default filled, as `polyculture check` and the workflow
    check it (`basedir`: the workflow's directory, default `workdir`); fails listing every
    problem, each naming its key."""
    from polyculture.config_check import config_problems, format_problems, load_config_files

    base = basedir or workdir
    config = load_config_files([workdir / c for c in configfiles])
    problems = config_problems(
        config, base / "schemas" / "config.schema.yaml", workdir, environ, basedir=base
    )
    if problems:
        sources = ", ".join(map(str, configfiles))
        raise PolycultureError(format_problems(problems, sources))
    return config


def plan_run(
    workdir: Path,
    configfiles: Sequence[Path],
    profile: Profiles = None,
    forceall: bool = False,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    basedir: Path | None = None,
) -> dict[str, Any]:
    """The plan of running the workflow of `basedir` (default: `workdir`) in `workdir` with
    `configfiles` through `profile` (None: locally): the config is checked first, then
    Snakemake dry-runs it."""
    return plan_details(workdir, configfiles, profile, forceall, extra, env, basedir)[0]


def plan_details(
    workdir: Path,
    configfiles: Sequence[Path],
    profile: Profiles = None,
    forceall: bool = False,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    basedir: Path | None = None,
) -> tuple[dict[str, Any], list[Job], dict[str, Any]]:
    """As :func:`plan_run`, with the dry run's jobs and the checked config (defaults filled)."""
    base = basedir or workdir
    config = checked_config(configfiles, workdir, base, {**os.environ, **(env or {})})
    if base.resolve() != workdir.resolve():
        extra = ["--snakefile", str(base / "Snakefile"), *extra]
    jobs = parse_jobs(dry_run(workdir, configfiles, profile, forceall, extra, env))
    ctx = Context(config, workdir, TokenCounter(workdir / config["results"] / "models"))
    plan = make_plan(jobs, read_profile(workdir, profile), ctx, basedir=base)
    return plan, jobs, config


def _argv_profiles(argv: Sequence[str]) -> list[str]:
    """The --profile values of a snakemake command line, in order."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--profile="):
            found.append(arg.split("=", 1)[1])
    return found


def check_budget(
    config: Mapping[str, Any],
    workdir: Path,
    configfiles: Sequence[str],
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    basedir: Path | None = None,
) -> list[str]:
    """The budget problems of the run the Snakefile is parsed for: empty where the config sets
    no budget, `plan_override: true` is given (`--config plan_override=true`), or this parse is
    the plan's own dry run. Plans through the profile of the command line (else
    SNAKEMAKE_PROFILE); the workflow calls it on the submitting side only, not in cluster jobs."""
    env = os.environ if environ is None else environ
    plan_cfg = config.get("plan") or {}
    if config.get("plan_override") in (True, "true") or env.get(PLANNING_ENV):
        return []
    if plan_cfg.get("max_gpu_hours") is None and plan_cfg.get("max_api_usd") is None:
        return []
    profile = _argv_profiles(argv) or env.get("SNAKEMAKE_PROFILE")
    plan = plan_run(workdir, [Path(c) for c in configfiles], profile, basedir=basedir)
    problems = budget_problems(plan, plan_cfg)
    if problems:
        problems.append(
            "to start anyway: --config plan_override=true (the plan: polyculture plan "
            f"--configfile {' '.join(shlex.quote(str(c)) for c in configfiles)})"
        )
    return problems
