"""Demo end to end, in a temporary copy of the workflow on 2 cores after installation (the venv
exists): first the tiny models (copied from the repository's results/models where it has them,
brought up to date by the workflow's own rules; built from scratch on a fresh clone), then the
wall time of both Snakemake commands of `make demo` (the run, the report) against the 10-minute
target, and from scratch (models included) where the models were built in this run; then where
the time goes, from the `benchmark:` TSV file every rule writes under results/benchmarks/: the
summed seconds of all jobs (more than the wall time where jobs ran side by side) and the five
rules with the most seconds summed over their jobs.

Run alone: `.venv/bin/python benchmarks/run.py bench_demo` (minutes).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from workspace import CORES, MODELS, demo_run

TARGET_S = 600.0
TOP = 5


@dataclass(frozen=True)
class RuleTotal:
    """Summed Snakemake benchmark figures of one rule's jobs."""

    rule: str
    jobs: int
    seconds: float
    cpu_seconds: float


def rule_totals(bench_dir: Path) -> list[RuleTotal]:
    """Per-rule totals of the benchmark TSVs under `bench_dir` (the rule is the first directory
    below it), most seconds first."""
    seconds: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rule = tsv.relative_to(bench_dir).parts[0]
        if rule.endswith(".tsv"):
            rule = rule.removesuffix(".tsv")
        with tsv.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                seconds[rule] += float(row["s"])
                cpu_time = row.get("cpu_time", "")
                cpu[rule] += float(cpu_time) if cpu_time not in ("", "NA", "-") else 0.0
                jobs[rule] += 1
    totals = [RuleTotal(r, jobs[r], seconds[r], cpu[r]) for r in seconds]
    return sorted(totals, key=lambda t: (-t.seconds, t.rule))


def run() -> dict:
    """Wall seconds of the demo (tiny models, run, report), summed job seconds, top five rules."""
    demo = demo_run()
    totals = rule_totals(demo.workdir / "results" / "benchmarks")
    wall = demo.run_seconds + demo.report_seconds
    summed = sum(t.seconds for t in totals)
    built = demo.models_jobs == len(MODELS)
    figures: dict[str, dict] = {
        "tiny_models_seconds": {
            "value": round(demo.models_seconds, 1),
            "unit": "s",
            "compares": f"snakemake results/models/tiny-chat results/models/tiny-embed, "
            f"--cores {CORES}: {demo.models_jobs} build job(s); models {demo.models_source}",
        },
        "demo_seconds": {
            "value": round(wall, 1),
            "unit": "s",
            "compares": f"wall time of both make demo commands with the tiny models built, "
            f"--cores {CORES} (target < {TARGET_S:g} s: {wall / TARGET_S:.0%} of it)",
        },
    }
    if built:
        scratch = demo.models_seconds + wall
        figures["make_demo_from_scratch_seconds"] = {
            "value": round(scratch, 1),
            "unit": "s",
            "compares": f"tiny models + demo run + report, all built in this run "
            f"(target < {TARGET_S:g} s: {scratch / TARGET_S:.0%} of it)",
        }
    figures |= {
        "run_seconds": {
            "value": round(demo.run_seconds, 1),
            "unit": "s",
            "compares": f"snakemake --configfile config.yaml ({demo.jobs} jobs incl. all)",
        },
        "report_seconds": {
            "value": round(demo.report_seconds, 1),
            "unit": "s",
            "compares": "snakemake --report results/report.html",
        },
        "summed_job_seconds": {
            "value": round(summed, 1),
            "unit": "s",
            "compares": f"sum of the s column of {sum(t.jobs for t in totals)} benchmark TSVs "
            f"({len(totals)} rules{', tiny models included' if built else ''}); / their wall "
            f"time = {summed / (wall + (demo.models_seconds if built else 0)):.2f} jobs at once",
        },
    }
    for rank, t in enumerate(totals[:TOP], start=1):
        figures[f"top{rank}_rule_seconds"] = {
            "value": round(t.seconds, 1),
            "unit": "s",
            "compares": f"{t.rule}: {t.jobs} job(s), {t.seconds / summed:.0%} of summed job "
            f"seconds, {t.cpu_seconds:.0f} CPU s",
        }
    return figures


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<22} {fig['value']!s:>10} {fig['unit']:<3} {fig['compares']}")
