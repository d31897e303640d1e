"""ruff (lint and format) is clean on the whole code base."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUFF = str(Path(sys.executable).with_name("ruff"))
PATHS = ["src", "scripts", "tests", "benchmarks"]


def test_ruff_check(repo_root: Path) -> None:
    proc = subprocess.run([RUFF, "check", *PATHS], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:]


def test_ruff_format(repo_root: Path) -> None:
    proc = subprocess.run(
        [RUFF, "format", "--check", *PATHS], cwd=repo_root, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
