"""The files that make up the workflow, and copying them into another working directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
    "src",
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


#: Environment variables the config check asks of some presets (a translator's or an API's key),
#: with placeholder values for runs that plan jobs but never call the service (dry runs, the
#: tests and benchmarks of every preset). A value already in the environment is kept.
PLACEHOLDER_ENV = {
    "GOOGLE_API_KEY": "placeholder-for-a-dry-run",
    "OPENAI_API_KEY": "placeholder-for-a-dry-run",
}


def placeholder_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The PLACEHOLDER_ENV variables that `environ` does not already set."""
    return {k: v for k, v in PLACEHOLDER_ENV.items() if not environ.get(k)}


def input_paths(config: Any, key: str = "") -> Iterator[str]:
    """Every relative input file path of a config: the values of keys named `path` or `*_path`
    (a source's `path`, `wvs.microdata_path`, ...), URLs and absolute paths left out."""
    if isinstance(config, dict):
        for k, v in config.items():
            yield from input_paths(v, str(k))
    elif isinstance(config, list):
        for v in config:
            yield from input_paths(v, key)
    elif (
        isinstance(config, str)
        and (key == "path" or key.endswith("_path"))
        and not Path(config).is_absolute()
        and "://" not in config
    ):
        yield config


def add_placeholders(workdir: Path, config: Any) -> list[str]:
    """Create an empty file for each input path of `config` that `workdir` lacks (the data sets
    a preset names and this repository does not ship); returns the paths made."""
    made = []
    for rel in input_paths(config):
        path = workdir / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            made.append(rel)
    return made
