"""The plan of a run: per rule its jobs, cluster submissions, GPUs per job, GPU-hours booked
(the profile's runtime limit of a first try x the job's GPUs, summed) and GPU-hours busy (the
engine's start-up plus the job's tokens at the throughput of its model size and GPU kind); per
API model and rule its requests, tokens and dollars. Also the budget check of `plan.*`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyculture.backends.spec import parse_model_spec
from polyculture.plan.dag import Job, Profile, local_rules, submissions
from polyculture.plan.tables import PRICES_DATE, cost_usd, price_table
from polyculture.plan.work import Context, busy_hours, job_work, model_label


def make_plan(
    jobs: Sequence[Job],
    profile: Profile,
    ctx: Context,
    gpu_kind: str | None = None,
    basedir: Path | None = None,
) -> dict[str, Any]:
    """The plan as the JSON object `polyculture plan --json` writes, plus a `notes` list
    (what was approximated or unknown) that the text output prints. `gpu_kind` overrides the
    jobs' `gpu_model` resource (without one: cpu); `basedir` is the workflow's directory."""
    local = local_rules(basedir or ctx.workdir)
    subs = submissions(jobs, profile, local)
    prices = price_table(ctx.config.get("plan") or {})
    rules: dict[str, dict[str, Any]] = {}
    api: dict[tuple[str, str], dict[str, Any]] = {}
    unknown: set[str] = set()
    measured: set[str] = set()
    for job in jobs:
        if job.rule == "all":
            continue
        row = rules.setdefault(
            job.rule,
            {
                "rule": job.rule,
                "jobs": 0,
                "submissions": 0.0,
                "gpus_per_job": set(),
                "gpu_hours_booked": 0.0,
                "gpu_hours_busy": 0.0,
            },
        )
        row["jobs"] += 1
        row["gpus_per_job"].add(job.gpus)
        kind = gpu_kind or job.resources.get("gpu_model") or "cpu"
        if job.gpus and job.runtime_min is not None:
            row["gpu_hours_booked"] += job.runtime_min / 60.0 * job.gpus
        work = job_work(job, ctx)
        if work is None and job.gpus:
            unknown.add(job.rule)
        if work and work.measured_output:
            measured.add(job.rule)
        row["gpu_hours_busy"] += busy_hours(job, work, kind, ctx)
        if work and parse_model_spec(work.model).is_api:
            name = model_label(work.model)
            entry = api.setdefault(
                (name, job.rule),
                {
                    "model": name,
                    "rule": job.rule,
                    "requests": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost_usd": 0.0,
                },
            )
            entry["requests"] += work.requests
            entry["input_tokens"] += work.input_tokens
            entry["output_tokens"] += work.output_tokens
    for entry in api.values():
        entry["cost_usd"] = round(
            cost_usd(prices, entry["model"], entry["input_tokens"], entry["output_tokens"]), 2
        )
    rule_rows = []
    for row in rules.values():
        gpus = sorted(row["gpus_per_job"])
        row["gpus_per_job"] = gpus[0] if len(gpus) == 1 else gpus
        row["submissions"] = round(subs.get(row["rule"], 0.0), 2)
        row["submissions"] = (
            int(row["submissions"]) if row["submissions"].is_integer() else row["submissions"]
        )
        row["gpu_hours_booked"] = round(row["gpu_hours_booked"], 4)
        row["gpu_hours_busy"] = round(row["gpu_hours_busy"], 4)
        rule_rows.append(row)
    rule_rows.sort(key=lambda r: (-r["gpu_hours_booked"], -r["submissions"], r["rule"]))
    api_rows = sorted(api.values(), key=lambda e: (e["rule"], e["model"]))
    notes = []
    if unknown:
        notes.append(
            "work unknown (no estimator, or inputs not made yet), busy = engine start-up only: "
            + ", ".join(sorted(unknown))
        )
    if measured:
        notes.append("output tokens measured from an earlier run: " + ", ".join(sorted(measured)))
    if ctx.tokens.approximated:
        notes.append(
            "tokens approximated as 4 characters each (no local tokenizer): "
            + ", ".join(sorted(ctx.tokens.approximated))
        )
    if api_rows:
        notes.append(f"prices: plan.prices over the defaults dated {PRICES_DATE}")
    return {
        "rules": rule_rows,
        "api": api_rows,
        "totals": {
            "submissions": round(sum(subs.values())),
            "gpu_hours_booked": round(sum(r["gpu_hours_booked"] for r in rule_rows), 4),
            "gpu_hours_busy": round(sum(r["gpu_hours_busy"] for r in rule_rows), 4),
            "api_cost_usd": round(sum(e["cost_usd"] for e in api_rows), 2),
        },
        "notes": notes,
    }


def plan_json(plan: Mapping[str, Any]) -> str:
    """The plan in its JSON shape (rules, api, totals)."""
    return json.dumps({k: plan[k] for k in ("rules", "api", "totals")}, indent=2)


def _hours(value: float) -> str:
    """GPU-hours to two decimals, three below 10 (small plans)."""
    return f"{value:.2f}" if value >= 10 else f"{value:.3f}"


def format_plan(plan: Mapping[str, Any]) -> str:
    """The plan as tables a person reads."""
    lines = [
        f"{'rule':<28}{'jobs':>6}{'subm.':>8}{'GPUs/job':>10}{'GPU-h booked':>14}{'GPU-h busy':>12}"
    ]
    for r in plan["rules"]:
        gpus = (
            r["gpus_per_job"]
            if isinstance(r["gpus_per_job"], int)
            else "/".join(map(str, r["gpus_per_job"]))
        )
        lines.append(
            f"{r['rule']:<28}{r['jobs']:>6}{r['submissions']:>8}{gpus!s:>10}"
            f"{_hours(r['gpu_hours_booked']):>14}{_hours(r['gpu_hours_busy']):>12}"
        )
    t = plan["totals"]
    lines.append(
        f"{'total':<28}{sum(r['jobs'] for r in plan['rules']):>6}{t['submissions']:>8}{'':>10}"
        f"{_hours(t['gpu_hours_booked']):>14}{_hours(t['gpu_hours_busy']):>12}"
    )
    if plan["api"]:
        lines += [
            "",
            f"{'API model':<26}{'rule':<24}{'requests':>10}{'input tok':>13}"
            f"{'output tok':>13}{'USD':>10}",
        ]
        for a in plan["api"]:
            lines.append(
                f"{a['model']:<26}{a['rule']:<24}{a['requests']:>10}{a['input_tokens']:>13}"
                f"{a['output_tokens']:>13}{a['cost_usd']:>10.2f}"
            )
        lines.append(f"{'total':<50}{'':>36}{t['api_cost_usd']:>10.2f}")
    lines += [f"note: {n}" for n in plan.get("notes", [])]
    return "\n".join(lines)


def budget_problems(plan: Mapping[str, Any], plan_cfg: Mapping[str, Any]) -> list[str]:
    """Each budget of `plan.max_gpu_hours` (GPU-hours booked) and `plan.max_api_usd` that the
    plan exceeds, naming the key and the stages (rules) that make up the excess, largest
    first."""
    problems = []
    limit = plan_cfg.get("max_gpu_hours")
    total = plan["totals"]["gpu_hours_booked"]
    if limit is not None and total > float(limit):
        stages = sorted(
            (r for r in plan["rules"] if r["gpu_hours_booked"] > 0),
            key=lambda r: -r["gpu_hours_booked"],
        )
        named = ", ".join(f"{r['rule']} {r['gpu_hours_booked']:.1f}" for r in stages)
        problems.append(
            f"plan.max_gpu_hours: the run books {total:.1f} GPU-hours, over the budget of "
            f"{float(limit):g} (stages: {named})"
        )
    limit = plan_cfg.get("max_api_usd")
    total = plan["totals"]["api_cost_usd"]
    if limit is not None and total > float(limit):
        per_rule: dict[str, float] = defaultdict(float)
        for a in plan["api"]:
            per_rule[a["rule"]] += a["cost_usd"]
        named = ", ".join(
            f"{rule} ${usd:.2f}" for rule, usd in sorted(per_rule.items(), key=lambda kv: -kv[1])
        )
        problems.append(
            f"plan.max_api_usd: the run's API calls cost ${total:.2f}, over the budget of "
            f"${float(limit):g} (stages: {named})"
        )
    return problems
