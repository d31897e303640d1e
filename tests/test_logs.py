"""Script logs (polyculture.logs.log_to): logging, warnings, Python and native stderr, child
processes and the traceback of an uncaught exception all land in the rule's log file, in one
format; every rule script routes its log through it; a failing rule of the workflow leaves its
traceback in results/logs/."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
#: scripts/ files that no rule runs (a maintainer's generator of demo data, run by hand).
NOT_RULE_SCRIPTS = {"make_demo_wvs.py"}

CHILD = """
import logging, os, subprocess, sys, warnings
from polyculture.logs import log_to
log_to(sys.argv[1])
logging.getLogger("polyculture.demo").info("a record from the library")
warnings.warn("a library warning", UserWarning)
print("python stderr line", file=sys.stderr)
os.write(2, b"native stderr line\\n")
subprocess.run([sys.executable, "-c", "import sys; print('child stderr line', file=sys.stderr)"])
print("stdout stays stdout")
raise ValueError("bad row 7 in table.parquet")
"""


def test_log_to_routes_everything_into_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "rule.log"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(log)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    text = log.read_text()
    lines = text.splitlines()
    record = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.search(rf"^{record}INFO polyculture\.demo: a record from the library$", text, re.M)
    assert re.search(
        rf"^{record}WARNING py\.warnings: .*UserWarning: a library warning", text, re.M
    )
    order = ["python stderr line", "native stderr line", "child stderr line"]
    assert [line for line in lines if line in order] == order
    crit = re.search(rf"^{record}CRITICAL polyculture: uncaught exception$", text, re.M)
    assert crit, text
    tail = text[crit.end() :]
    assert "Traceback (most recent call last):" in tail
    assert "ValueError: bad row 7 in table.parquet" in tail
    # The terminal keeps stdout and gets one pointer to the log, not the traceback.
    assert proc.stdout == "stdout stays stdout\n"
    assert proc.stderr == f"ValueError: bad row 7 in table.parquet\n(full traceback in {log})\n"


def _calls_log_to_first(path: Path) -> bool:
    """True when the first statement after the docstring and the log_to import is
    `log_to(snakemake.log[0])`."""
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) < 2:
        return False
    imp, call = body[0], body[1]
    return (
        isinstance(imp, ast.ImportFrom)
        and imp.module == "polyculture.logs"
        and [a.name for a in imp.names] == ["log_to"]
        and ast.unparse(call) == "log_to(snakemake.log[0])"
    )


def test_every_rule_script_routes_its_log_first() -> None:
    scripts = sorted(p for p in SCRIPTS.glob("*.py") if p.name not in NOT_RULE_SCRIPTS)
    assert len(scripts) > 40
    late = [p.name for p in scripts if not _calls_log_to_first(p)]
    assert not late, f"scripts that do not start with log_to(snakemake.log[0]): {late}"
    # No second, competing configuration of logging or stderr.
    rivals = [
        p.name
        for p in scripts
        if re.search(r"logging\.basicConfig|redirect_stderr|sys\.stderr\s*=", p.read_text())
    ]
    assert not rivals, rivals


def test_every_rule_that_runs_a_script_has_a_log() -> None:
    """log_to(snakemake.log[0]) needs a `log:` in every rule that runs a script."""
    missing = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            m = re.match(r"rule (\w+):", block)
            if m and "script:" in block and not re.search(r"^\s+log:", block, re.M):
                missing.append(f"{smk.name}:{m.group(1)}")
    assert not missing, missing


@pytest.mark.workflow
def test_failing_rule_leaves_its_traceback_in_results_logs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A rule fails on a bad input file: its traceback is in its log under results/logs/, and
    Snakemake's output (what a terminal or a SLURM job log shows) points there."""
    work = copy_workflow(tmp_path_factory.mktemp("failing-rule"))
    config = yaml.safe_load((work / "config.yaml").read_text(encoding="utf-8"))
    schema = yaml.safe_load((work / "schemas" / "config-wvs.schema.yaml").read_text("utf-8"))
    topics = work / config["wvs"].get("topics_path", schema["properties"]["topics_path"]["default"])
    topics.write_text("this is not the topics table the rule expects\n", encoding="utf-8")
    proc = run_snakemake(work, "results/wvs/polarity.parquet", check=False, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    logs = sorted((work / "results" / "logs").rglob("*.log"))
    failed = [p for p in logs if "Traceback (most recent call last):" in p.read_text()]
    assert len(failed) == 1, (logs, out[-3000:])
    text = failed[0].read_text()
    assert re.search(r"CRITICAL polyculture: uncaught exception\nTraceback", text), text
    assert str(topics.relative_to(work)) in text or topics.name in text, text
    assert f"(full traceback in {failed[0].relative_to(work)})" in out, out[-3000:]
