"""Every preset — config.yaml and each configs/*.yaml, found by glob so a new preset is checked
without editing this file — passes the config schema, the cross-key check_config and a
`snakemake -n` of the whole workflow. The data sets a preset names and this repository does not
ship are empty placeholder files, and the keys the config check asks of translators and APIs are
placeholders (polyculture.project.PLACEHOLDER_ENV): a dry run never reads or calls them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.config_check import check_config, validate_config
from polyculture.project import add_placeholders, placeholder_env

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["config.yaml", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/*.yaml"))]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def presets_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("presets"))


def test_every_preset_is_listed() -> None:
    assert len(PRESETS) >= 4, PRESETS
    assert "configs/paper-wvs.yaml" in PRESETS and "configs/paper-consensus.yaml" in PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_passes_schema_check_and_dry_run(
    preset: str, presets_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load((presets_copy / preset).read_text(encoding="utf-8"))
    add_placeholders(presets_copy, config)
    env = placeholder_env(os.environ)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # The three checks one by one, so that a failure names the one that failed ...
    validate_config(config, SCHEMA)
    check_config(config, workdir=presets_copy)
    # ... and the workflow as Snakemake plans it: every rule's input functions, wildcards,
    # params and the config check in common.smk.
    proc = run_snakemake(presets_copy, "-n", "--configfile", preset, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    stats = re.search(r"^total\s+(\d+)$", out, flags=re.M)
    assert stats and int(stats.group(1)) > 1, out[-3000:]
