"""Shared helpers of the benchmarks (not a benchmark itself: run.py only imports bench_*.py).

- `copy_workflow` copies the workflow's own files into a temporary directory, so that no
  benchmark writes into the repository;
- `snakemake` runs Snakemake there and times it; `planned_jobs` reads the job count of a run;
- `demo_run` runs the demo once per process (the tiny models first, then both commands of
  `make demo`) and is shared by the demo and DAG benchmarks; `tiny_models` gives the tiny models' paths (from that demo run, else
  the repository's results/models, else built by the workflow's own rules in a temporary copy);
- `demo_texts` reads short real texts of the demo data (questions, statements, instructions).
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from polyculture import project

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CORES = 2  # the targets are for 2 cores
MODELS = ("tiny-chat", "tiny-embed")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"polyculture-bench-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's own files (not results, venvs or git) into `dest`."""
    return project.copy_workflow(REPO, dest)


def _complete(models: Path) -> bool:
    """Whether `models` holds both tiny models."""
    return all((models / m / "config.json").is_file() for m in MODELS)


@dataclass(frozen=True)
class Timed:
    """One Snakemake invocation: its wall seconds and output."""

    seconds: float
    stdout: str
    stderr: str


def snakemake(
    workdir: Path, *args: str, timeout: int = 1800, env: dict[str, str] | None = None
) -> Timed:
    """Run `snakemake --cores 2 *args` in `workdir` offline (extra environment `env`); wall
    seconds of the whole process (interpreter start included). Fails with the tail of the
    output when Snakemake fails."""
    env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(
        [SNAKEMAKE, "--cores", str(CORES), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}) in {workdir}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return Timed(seconds, proc.stdout, proc.stderr)


_TOTAL = re.compile(r"^total\s+(\d+)\s*$", re.MULTILINE)
_NOTHING = "Nothing to be done"


def planned_jobs(output: str) -> int:
    """Number of jobs in a Snakemake run's output: the last 'total N' of its job stats, 0 where
    it says there is nothing to be done."""
    totals = _TOTAL.findall(output)
    if totals:
        return int(totals[-1])
    if _NOTHING in output:
        return 0
    raise ValueError("no job stats and no 'Nothing to be done' in the Snakemake output")


@dataclass(frozen=True)
class DemoRun:
    """The demo run of this process: its working directory, where its tiny models came from, and
    the seconds of making sure they are built, of the run and of the report."""

    workdir: Path
    models_source: str
    models_seconds: float
    models_jobs: int
    run_seconds: float
    report_seconds: float
    jobs: int


_demo: DemoRun | None = None


def seed_models(workdir: Path) -> str:
    """Copy the repository's tiny models (results/models) into `workdir` where both are there
    (timestamps kept, so Snakemake rebuilds them only if the corpus is newer); says what it did."""
    src = REPO / "results" / "models"
    if not _complete(src):
        return "none in the repository: built in this run"
    for m in MODELS:
        shutil.copytree(src / m, workdir / "results" / "models" / m)
    return "copied from the repository's results/models"


def demo_run() -> DemoRun:
    """Run the demo once per process in a temporary copy of the workflow on 2 cores: first the
    tiny models (copied from results/models where the repository has them, then brought up to
    date by the workflow's own rules), then both commands of `make demo` (the run, the report)."""
    global _demo
    if _demo is None:
        workdir = copy_workflow(scratch_dir("demo"))
        source = seed_models(workdir)
        models = snakemake(workdir, *(f"results/models/{m}" for m in MODELS))
        run = snakemake(workdir, "--configfile", "config.yaml", timeout=3600)
        report = snakemake(
            workdir, "--configfile", "config.yaml", "--report", "results/report.html"
        )
        _demo = DemoRun(
            workdir=workdir,
            models_source=source,
            models_seconds=models.seconds,
            models_jobs=planned_jobs(models.stdout + models.stderr),
            run_seconds=run.seconds,
            report_seconds=report.seconds,
            jobs=planned_jobs(run.stdout + run.stderr),
        )
    return _demo


_models: dict[str, Path] | None = None


def tiny_models() -> dict[str, Path]:
    """Paths of the tiny chat and embedding models: those of this process's demo run if it has
    run, else the repository's results/models if both are there, else built by the workflow's
    own rules (rules/models.smk) in a temporary copy."""
    global _models
    if _models is None:
        if _demo is not None and _complete(_demo.workdir / "results" / "models"):
            models = _demo.workdir / "results" / "models"
        elif _complete(REPO / "results" / "models"):
            models = REPO / "results" / "models"
        else:
            workdir = copy_workflow(scratch_dir("models"))
            snakemake(workdir, *(f"results/models/{m}" for m in MODELS))
            models = workdir / "results" / "models"
        _models = {m: models / m for m in MODELS}
    return _models


def demo_texts() -> list[str]:
    """Distinct short texts of the demo data, in file order: BLEnD questions (local language and
    English), CANDLE and CultureAtlas statements, Aya instructions and answers."""
    demo = REPO / "resources" / "demo"
    texts: list[str] = []
    for path in sorted((demo / "blend" / "questions").glob("*_questions.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                texts += [row["Question"], row["Translation"]]
    for line in (demo / "consensus" / "candle.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(json.loads(line)["assertion"])
    with (demo / "consensus" / "cultureatlas.csv").open(encoding="utf-8", newline="") as fh:
        texts += [row["Assertion"] for row in csv.DictReader(fh)]
    for line in (demo / "consensus" / "aya.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts += [row["inputs"], row["targets"]]
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))
