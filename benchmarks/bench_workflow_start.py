"""What one start of Snakemake on this workflow costs, and the config validation's share.

On a cluster every job starts Snakemake twice (the job, then its srun step; a group job once more
per member), and each start parses the workflow, which validates the config. Figures, one run:
- CPU seconds (user + system) of `snakemake --list-rules` (imports, workflow parse, config
  validation) against `snakemake --version` (imports only), mean of REPEATS alternating runs:
  the workflow's own share of a start;
- the config validation, polyculture.config_check.validate_config (schema with its `$ref`s
  inlined, each file read once, defaults set in one pass) against snakemake.utils.validate on
  the same schema and config (which reads a referenced file again for each reference and leaves
  the `$ref`'d sections' defaults unset), best of REPEATS each: the ratio is the speed-up.

Run alone: `.venv/bin/python benchmarks/run.py bench_workflow_start` (a minute).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from workspace import copy_workflow, scratch_dir

from polyculture.config_check import validate_config

REPEATS = 6
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def child_cpu_seconds(args: list[str], cwd: Path) -> float:
    """User + system CPU seconds of one run of `args` (a child process)."""
    before = os.times()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def best_seconds(func, repeats: int = REPEATS) -> float:  # type: ignore[no-untyped-def]
    """Fewest wall seconds of `repeats` calls of `func`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def run() -> dict:
    from snakemake.utils import validate

    workdir = copy_workflow(scratch_dir("workflow-start"))
    parse, imports = [], []
    for _ in range(REPEATS):  # alternating, so that drifting load hits both alike
        parse.append(child_cpu_seconds([str(SNAKEMAKE), "--list-rules"], workdir))
        imports.append(child_cpu_seconds([str(SNAKEMAKE), "--version"], workdir))
    start_s, import_s = sum(parse) / REPEATS, sum(imports) / REPEATS

    schema = workdir / "schemas" / "config.schema.yaml"
    config = yaml.safe_load((workdir / "config.yaml").read_text(encoding="utf-8"))
    ours = best_seconds(lambda: validate_config(copy.deepcopy(config), schema))
    theirs = best_seconds(lambda: validate(copy.deepcopy(config), str(schema), set_default=True))
    return {
        "start_cpu_seconds": {
            "value": round(start_s, 3),
            "unit": "CPU s",
            "compares": f"snakemake --list-rules on the demo config, mean of {REPEATS}",
        },
        "workflow_share_cpu_seconds": {
            "value": round(start_s - import_s, 3),
            "unit": "CPU s",
            "compares": f"snakemake --list-rules minus snakemake --version, mean of {REPEATS}: "
            "parse of the workflow and config validation per start",
        },
        "validate_config_seconds": {
            "value": round(ours, 4),
            "unit": "s",
            "compares": f"polyculture.config_check.validate_config, demo config, best of {REPEATS}",
        },
        "snakemake_validate_over_validate_config": {
            "value": round(theirs / ours, 2),
            "unit": "x",
            "compares": "snakemake.utils.validate(set_default=True) / validate_config, same "
            f"schema and config, best of {REPEATS} each (ours also sets the $ref'd defaults)",
        },
    }
