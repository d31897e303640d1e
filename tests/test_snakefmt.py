"""snakefmt (the Snakemake formatter that the Snakemake workflow catalog checks) is clean on the
Snakefile and every rule file. `make check` runs the same command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNAKEFMT = str(Path(sys.executable).with_name("snakefmt"))


def test_snakefmt_check(repo_root: Path) -> None:
    proc = subprocess.run(
        [SNAKEFMT, "--check", "--diff", "Snakefile", "rules"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
