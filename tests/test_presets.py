"""Every preset — config.yaml, each configs/*.yaml and each template configs/templates/*.yaml,
found by glob so a new preset is checked without editing this file — passes the config schema, the cross-key check_config and a
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

from polyculture.backends.engine import engine_groups
from polyculture.config_check import check_config, validate_config
from polyculture.project import add_placeholders, placeholder_env

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/templates/*.yaml"))
PRESETS = [
    "config.yaml",
    *sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/*.yaml")),
    *TEMPLATES,
]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def presets_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("presets"))


def test_every_preset_is_listed() -> None:
    assert len(PRESETS) >= 4, PRESETS
    assert "configs/paper-wvs.yaml" in PRESETS and "configs/paper-consensus.yaml" in PRESETS
    assert {
        f"configs/templates/{n}.yaml" for n in ("consensus-own-model", "wvs-endpoint", "evaluate")
    } <= set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_names_its_model_once_and_carries_no_paper_leftovers(template: str) -> None:
    """A user adapts a template by changing the model in one place: every model spec that the
    config uses more than once is written once (a YAML anchor), and nothing of the papers'
    presets (the Llama licence, published deltas, the paper's capability table) is inherited."""
    from polyculture.config_check import _walk, is_model_key

    text = (REPO / template).read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    specs = [v for _, k, v in _walk(config) if is_model_key(k) and isinstance(v, str)]
    for spec in {s for s in specs if specs.count(s) > 1}:
        assert text.count(spec) == 1, f"{template}: '{spec}' written {text.count(spec)} times"
    assert "<-- YOU" in text and "polyculture check --configfile" in text
    assert "llama3.1" not in text and "published" not in yaml.safe_dump(config)
    assert "rystrom2025" not in text


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
    # BLEnD: one generation job (one engine) per base model and its backend settings, whatever
    # the countries and adapters (issue 26)
    if (config.get("pipelines") or {}).get("evaluate", True) and config.get("eval_models"):
        bases = {m["model"] for m in config["eval_models"]}
        blend = re.search(r"^blend_generate\s+(\d+)$", out, flags=re.M)
        assert blend, out[-3000:]
        assert int(blend.group(1)) == len(engine_groups(config["eval_models"])), blend.group(0)
        if not any(m.get("backend") or m.get("merge_adapter") for m in config["eval_models"]):
            assert int(blend.group(1)) == len(bases), (preset, blend.group(0))
