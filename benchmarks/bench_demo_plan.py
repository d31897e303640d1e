"""The plan against a real run: `polyculture plan` of the demo (config.yaml, locally, every job:
--forceall) with this CPU's measured throughput, per model stage against the Snakemake
benchmark files of a finished demo run (goal: within 2x per stage).

The CPU's throughput row is measured here, in a fresh process as a job starts: start-up = the
process's wall time from its start through importing Snakemake's script support and loading
tiny-chat on the hf backend (what every model job does before its first prompt); output tok/s =
batched sampling of 32 demo prompts x 48 new tokens, the batch size of the demo config.

The demo run: POLYCULTURE_BENCH_DEMO_DIR (the working directory of a finished demo run, whose
results/ the plan reads in place and whose results/benchmarks/ it is compared with), else this
process's demo run (workspace.demo_run: minutes). Its job wall times depend on what else ran
on the CPUs (a job's `mean_load` is its CPU use in percent): the plan is made twice, with the
wall-clock and with the CPU-seconds figures of this CPU, and compared with the run's wall
seconds (`s`) and CPU seconds (`cpu_time`)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml
from workspace import REPO, copy_workflow, demo_run, demo_texts

from polyculture.plan import plan_details

#: The stages the comparison covers: those that run a model and whose work the plan estimates.
STAGES = (
    "write_paragraphs",
    "generate_questions",
    "translate_questions",
    "sample_responses",
    "embed_responses",
    "translate_ground_truth",
    "critique",
    "blend_generate",
    "wvs_translate_prompts",
    "wvs_survey",
    "wvs_judge",
)
NEW_TOKENS = 48

WORKER = """
import json, sys, time
start = float(sys.argv[2])
cpu0 = time.process_time()
import snakemake.script  # noqa: F401  (a rule script's preamble imports it)
from polyculture.backends.generation import Sampling, load_generator
gen = load_generator(sys.argv[1], backend="hf", batch_size=16)
startup = time.time() - start
startup_cpu = time.process_time() - cpu0
prompts = json.loads(sys.argv[3])
convs = [[{"role": "user", "content": p}] for p in prompts]
n = int(sys.argv[4])
s = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=n, min_new_tokens=n)
gen.generate(convs[:2], 1, Sampling(temperature=0.7, max_new_tokens=4, min_new_tokens=4))
t, c = time.perf_counter(), time.process_time()
out = gen.generate(convs, 1, s)
seconds, cpu = time.perf_counter() - t, time.process_time() - c
tokens = len(convs) * n
print(json.dumps({"wall": {"startup_s": startup, "output_tok_s": tokens / seconds},
                  "cpu": {"startup_s": startup_cpu, "output_tok_s": tokens / cpu}}))
"""


def measure_cpu(model: Path) -> dict[str, float]:
    """Start-up seconds and output tok/s of tiny-chat on the hf backend, in a fresh process."""
    import time

    prompts = demo_texts()[:32]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(model),
            repr(time.time()),
            json.dumps(prompts),
            str(NEW_TOKENS),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measured(bench_dir: Path) -> dict[str, dict[str, float]]:
    """Per rule: the summed wall seconds (`s`), CPU seconds (`cpu_time`), jobs and CPU use
    (`mean_load`, percent of one CPU, summed over jobs) of a run's Snakemake benchmark files."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in bench_dir.rglob("*.tsv"):
        rule = path.relative_to(bench_dir).parts[0]
        with path.open(encoding="utf-8") as fh:
            row = list(csv.DictReader(fh, delimiter="\t"))[-1]
        t = totals[rule]
        t["s"] += float(row["s"])
        t["cpu_time"] += float(row["cpu_time"])
        t["load"] += float(row["mean_load"])
        t["jobs"] += 1
    return totals


def cpu_row(figures: dict[str, float], clock: str) -> dict[str, object]:
    """A plan.throughput row of the measured figures."""
    return {
        "gpu": "cpu",
        "max_params_b": 1.0,
        "output_tok_s": round(figures["output_tok_s"], 1),
        "input_tok_s": round(8 * figures["output_tok_s"], 1),
        "startup_s": round(figures["startup_s"], 2),
        "source": f"bench_demo_plan: measured on this CPU ({clock} seconds)",
    }


def planned_seconds(demo: Path, row: dict[str, object]) -> tuple[dict[str, float], list[str]]:
    """Per rule, the plan's busy seconds of the demo (every job) with throughput row `row`."""
    with tempfile.TemporaryDirectory(prefix="bench-demo-plan-") as tmp:
        workdir = copy_workflow(Path(tmp) / "wf")
        (workdir / "results").symlink_to(
            demo / "results"
        )  # read in place; a dry run writes nothing
        overlay = workdir / "plan-cpu.yaml"
        overlay.write_text(yaml.safe_dump({"plan": {"throughput": [row]}}), encoding="utf-8")
        plan, _, _ = plan_details(workdir, [Path("config.yaml"), overlay], None, forceall=True)
    busy = {
        r["rule"]: r["gpu_hours_busy"] * 3600 / max(1, _gpus(r["gpus_per_job"]))
        for r in plan["rules"]
    }
    return busy, plan["notes"]


def run() -> dict[str, dict]:
    given = os.environ.get("POLYCULTURE_BENCH_DEMO_DIR")
    demo = Path(given) if given else demo_run().workdir
    cpu = measure_cpu(demo / "results" / "models" / "tiny-chat")
    figures: dict[str, dict] = {}
    for clock in ("wall", "cpu"):
        figures[f"{clock}.startup_s"] = {
            "value": round(cpu[clock]["startup_s"], 2),
            "unit": "s",
            "compares": f"{clock} seconds from a fresh process to tiny-chat loaded (hf)",
        }
        figures[f"{clock}.output_tok_s"] = {
            "value": round(cpu[clock]["output_tok_s"], 1),
            "unit": "tok/s",
            "compares": f"per {clock} second: tiny-chat hf batched sampling, 32 prompts x "
            f"{NEW_TOKENS} tokens",
        }
    runs = measured(demo / "results" / "benchmarks")
    column = {"wall": "s", "cpu": "cpu_time"}
    for clock in ("wall", "cpu"):
        busy, notes = planned_seconds(demo, cpu_row(cpu[clock], clock))
        within = compared = 0
        for stage in STAGES:
            if stage not in busy or stage not in runs:
                continue
            m = runs[stage]
            ratio = busy[stage] / m[column[clock]] if m[column[clock]] else None
            compared += 1
            within += bool(ratio and 0.5 <= ratio <= 2)
            figures[f"{clock}.{stage}.plan_over_run"] = {
                "value": round(ratio, 3) if ratio else None,
                "unit": "ratio",
                "compares": f"{int(m['jobs'])} jobs: planned {busy[stage]:.1f} s, run "
                f"{m[column[clock]]:.1f} {clock} s (the run's jobs used "
                f"{m['load'] / m['jobs']:.0f} % of a CPU on average, {os.cpu_count()} cores)",
            }
        figures[f"{clock}.stages_within_2x"] = {
            "value": within,
            "unit": "stages",
            "compares": f"of {compared} model stages, plan vs the run's {clock} seconds within "
            "2x (goal: all)",
        }
    figures["notes"] = {"value": len(notes), "unit": "", "compares": " | ".join(notes)}
    return figures


def _gpus(value: int | list[int]) -> int:
    return value if isinstance(value, int) else max(value)


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<44} {fig['value']!s:>10} {fig['unit']:<6} {fig['compares']}")
