"""The files that make up the workflow, and copying them into another working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

#: Top-level files and folders of the workflow (no results, virtualenvs or git).
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "schemas",
    "resources",
    "report",
    "profiles",
    "configs",
    "envs",
)


def copy_workflow(root: Path, dest: Path) -> Path:
    """Copy the workflow's own files from the checkout `root` into `dest`; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = root / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "results*")
            )
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest
