"""The execution profiles as a user names them: `--profile profiles/slurm` alone gives the SLURM
settings (no workflow profile mixed in), the local profile is named explicitly, and a site's
SLURM settings can live outside the tracked files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yte
from conftest import copy_workflow, run_snakemake

REPO = Path(__file__).resolve().parents[1]


def slurm_profile(env: dict[str, str] | None = None, cwd: Path = REPO) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (yte), in `cwd` with `env` set."""
    old_env, old_cwd = dict(os.environ), Path.cwd()
    os.environ.update(env or {})
    os.chdir(cwd)
    try:
        text = (REPO / "profiles" / "slurm" / "config.yaml").read_text(encoding="utf-8")
        profile = yte.process_yaml(text, require_use_yte=True)
        return {**profile, "_placement": os.environ.get("POLYCULTURE_PLACEMENT")}
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def test_no_profile_is_added_behind_the_users_back() -> None:
    # Snakemake adds <workflow>/profiles/default to every run as the workflow profile
    assert not (REPO / "profiles" / "default").exists()
    assert (REPO / "profiles" / "local" / "config.yaml").is_file()
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    demo = [
        line for line in makefile.splitlines() if "bin/snakemake" in line and "--configfile" in line
    ]
    assert demo and all("--profile profiles/local" in line for line in demo), demo


def test_slurm_profile_alone_gives_the_slurm_resources(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    proc = run_snakemake(work, "--profile", "profiles/slurm", "-n", "results/models/tiny-chat")
    out = proc.stdout + proc.stderr
    assert out.count("Using profile") == 1 and "workflow specific profile" not in out
    resources = re.search(r"resources: (.*)", out)
    assert resources, out[-2000:]
    assert "mem_mb=8000" in resources.group(1) and "slurm_partition=cpu" in resources.group(1)
    assert "slurm_account=my_account" in resources.group(1)


def test_site_settings_from_a_file_outside_the_repository(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "account: lab42\ngpu_model: a100\n"
        'resource_overrides: {wvs_survey: {runtime: "480 * attempt"}}\n',
        encoding="utf-8",
    )
    profile = slurm_profile({"POLYCULTURE_SITE": str(site)})
    assert profile["default-resources"]["slurm_account"] == "lab42"
    # the GPU type reaches the workflow's per-job placement (polyculture.placement)
    assert json.loads(profile["_placement"])["gpu_model"] == "a100"
    assert profile["set-resources"]["wvs_survey"]["runtime"] == "480 * attempt"
    # without it: the tracked defaults
    assert slurm_profile()["default-resources"]["slurm_account"] == "my_account"
    site.write_text("acount: lab42\n", encoding="utf-8")
    with pytest.raises(yte.exceptions.YteError, match="unknown site setting.*acount"):
        slurm_profile({"POLYCULTURE_SITE": str(site)})


def test_untracked_site_file_is_ignored_by_git() -> None:
    assert "profiles/slurm/site.yaml" in (REPO / ".gitignore").read_text(encoding="utf-8")
