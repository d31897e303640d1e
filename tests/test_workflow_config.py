"""The workflow as a whole: lint, dry run of the default config, and bad configs that stop the
run before any job with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("config-checks"))


@pytest.fixture(scope="module")
def default_config(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "config.yaml").read_text(encoding="utf-8"))


def test_lint_is_clean(workflow_copy: Path) -> None:
    proc = run_snakemake(workflow_copy, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out[-4000:]


def test_dry_run_of_default_config(workflow_copy: Path) -> None:
    proc = run_snakemake(workflow_copy, "-n", "--quiet", "rules")
    assert "total" in proc.stdout


def _set(cfg: dict, dotted: str, value: object) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    node[keys[-1]] = value
    return cfg


BAD_CONFIGS = [
    ("unknown top-level key", "bogus", 1, ["'bogus' was unexpected"]),
    ("unknown key in a section", "backend.bogus", 1, ["'bogus' was unexpected", "backend"]),
    ("wrong type", "seed", "abc", ["'abc' is not of type 'integer'", "seed"]),
    ("value out of range", "backend.batch_size", 0, ["batch_size", "minimum"]),
    (
        "unknown backend",
        "backend.generation",
        "tensorrt",
        ["'tensorrt' is not one of", "generation"],
    ),
    (
        "unknown BLEnD prompt format",
        "evaluate.blend.prompt_format",
        "template",
        ["'template' is not one of ['chat', 'raw']", "prompt_format"],
    ),
    (
        "unknown built-in model",
        "translator.model",
        "builtin:huge",
        ["config key 'translator.model'", "unknown built-in model 'huge'"],
    ),
    (
        "model directory that does not exist",
        "eval_models.0.model",
        "./models/missing-model",
        ["config key 'eval_models[0].model'", "the directory does not exist"],
    ),
    (
        "model spec that is neither id, path nor builtin",
        "eval_models.0.model",
        "just some words",
        ["config key 'eval_models[0].model'", "neither a Hugging Face id"],
    ),
    (
        "adapter that names no training variant",
        "eval_models.0.adapter",
        "no-such-variant",
        ["config key 'eval_models[0].adapter'", "'no-such-variant' is neither a training variant"],
    ),
]


@pytest.mark.parametrize(
    ("case", "key", "value", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_stops_before_any_job(
    workflow_copy: Path,
    default_config: dict,
    case: str,
    key: str,
    value: object,
    expected: list[str],
) -> None:
    bad = workflow_copy / f"bad-{key}.yaml"
    bad.write_text(yaml.safe_dump(_set(default_config, key, value)), encoding="utf-8")
    proc = run_snakemake(workflow_copy, "-n", "--configfile", bad.name, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{case}: accepted\n{out[-2000:]}"
    for fragment in expected:
        assert fragment in out, f"{case}: {fragment!r} not in\n{out[-3000:]}"
    # the check's own list, no traceback through the library
    assert "polyculture: config check: 1 problem:" in out, out[-3000:]
    assert "Traceback" not in out and "config_check.py" not in out, out[-3000:]
    assert not (workflow_copy / "results").exists()


def test_malformed_yaml_is_rejected(workflow_copy: Path) -> None:
    # Snakemake parses --configfile itself, before the workflow runs; its message does not name
    # the file, so this checks the rejection and the kind of error only.
    bad = workflow_copy / "malformed.yaml"
    bad.write_text("seed: 1\nbackend: [unclosed\n", encoding="utf-8")
    proc = run_snakemake(workflow_copy, "-n", "--configfile", bad.name, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Config file is not valid JSON or YAML" in out
    assert not (workflow_copy / "results").exists()
