"""Prefetch and offline jobs (polyculture.prefetch): what a config loads from the hub, fetching it
into a local Hugging Face cache, loading it from there with the network cut off, and the message
of a job that needed an item nobody prefetched. No hub is reachable here: the cache is laid out by
hand in the hub client's own format, and the endpoint refuses every connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyculture.backends.spec import classify_model_spec
from polyculture.config_check import validate_config
from polyculture.logs import OFFLINE_ENV, offline_hint
from polyculture.prefetch import HubItem, hub_items, item_slug

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9"}


def preset(name: str) -> dict:
    config = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    validate_config(config, SCHEMA)
    return config


def test_demo_config_needs_nothing_from_the_hub() -> None:
    assert hub_items(preset("config.yaml")) == []


def test_paper_wvs_items_are_its_hub_models_only() -> None:
    config = preset("configs/paper-wvs.yaml")
    assert config["pipelines"]["consensus"] is False and config["pipelines"]["evaluate"] is False
    items = hub_items(config)
    expected = {m["model"] for m in config["eval_models"]} | {
        config["translator"]["model"],
        config["wvs"]["judge"],
    }
    expected = {m for m in expected if classify_model_spec(m) == "hub"}
    assert {i.name for i in items} == expected
    assert {i.kind for i in items} == {"model"}
    # switched-off stage groups load nothing: the consensus generator is not fetched (unless
    # it is also an eval model)
    generator = config["consensus"]["generator"]
    eval_ids = {m["model"] for m in config["eval_models"]}
    assert generator in eval_ids or generator not in {i.name for i in items}


def test_paper_consensus_items_include_datasets_and_lm_eval_tasks() -> None:
    config = preset("configs/paper-consensus.yaml")
    items = hub_items(config)
    tasks = [t["task"] for t in config["evaluate"]["general"]["tasks"]]
    assert [i.name for i in items if i.kind == "lm_eval_task"] == tasks
    assert config["consensus"]["general"]["hub"] in {i.name for i in items if i.kind == "dataset"}
    models = {i.name for i in items if i.kind == "model"}
    assert config["consensus"]["embedder"] in models
    assert {m["model"] for m in config["eval_models"]} <= models
    # each item once, with a distinct marker file name
    slugs = [(i.kind, item_slug(i)) for i in items]
    assert len(slugs) == len(set(slugs))


def _cache_model(hf_home: Path, repo_id: str) -> Path:
    """Lay out `repo_id` in the hub client's cache format (refs/main → a snapshot holding a
    small Llama config), as snapshot_download leaves it; returns the snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    config = {
        "model_type": "llama",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 64,
    }
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


def _offline_python(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV, **NO_NETWORK, "HF_HOME": str(hf_home)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )


def test_prefetch_finds_a_cached_model_offline_and_names_a_missing_one(tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    snapshot = _cache_model(hf_home, "polyculture-test/tiny-llama")
    code = """
import json
from polyculture.prefetch import HubItem, PrefetchError, prefetch
rows = prefetch([HubItem("model", "polyculture-test/tiny-llama", "eval_models[0].model")])
print(json.dumps(rows))
from transformers import AutoConfig
print("layers", AutoConfig.from_pretrained("polyculture-test/tiny-llama").num_hidden_layers)
try:
    prefetch([HubItem("model", "polyculture-test/tiny-llama", "a"),
              HubItem("model", "polyculture-test/absent", "wvs.judge")])
except PrefetchError as e:
    print("ERROR", e)
"""
    proc = _offline_python(code, hf_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    (row,) = json.loads(lines[0])
    assert Path(row["location"]) == snapshot and row["key"] == "eval_models[0].model"
    assert lines[1] == "layers 1"
    error = "\n".join(lines[2:])
    assert error.startswith("ERROR could not fetch 1 item(s)"), error
    assert "model 'polyculture-test/absent' (wvs.judge)" in error and str(hf_home) in error


@pytest.mark.parametrize(
    ("loader", "item"),
    [
        ("from transformers import AutoConfig; AutoConfig.from_pretrained(ITEM)", "org1/model-x"),
        ("import datasets; datasets.load_dataset(ITEM, split='train')", "org2/dataset-y"),
    ],
    ids=["model", "dataset"],
)
def test_offline_job_names_the_missing_item_and_the_prefetch_target(
    tmp_path: Path, loader: str, item: str
) -> None:
    log = tmp_path / "logs" / "rule.log"
    code = f"ITEM = {item!r}\nfrom polyculture.logs import log_to\nlog_to({str(log)!r})\n{loader}\n"
    proc = _offline_python(code, tmp_path / "empty-cache")
    assert proc.returncode == 1
    text = log.read_text()
    assert "hub access: offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE)" in text
    for where in (text, proc.stderr):
        assert "this job runs offline" in where and f"needed '{item}'" in where, where[-2000:]
        assert (
            "prefetch target" in where and "`snakemake prefetch --profile profiles/slurm`" in where
        )


def test_offline_hint_only_for_offline_hub_errors() -> None:
    class OfflineModeIsEnabled(Exception):
        pass

    offline = {"HF_HUB_OFFLINE": "1"}
    err = OfflineModeIsEnabled("Cannot reach https://hub/api/models/a/b: offline mode is enabled.")
    assert offline_hint(err, offline) is not None
    assert offline_hint(err, {}) is None  # online: some other cause
    assert offline_hint(ValueError("bad row 3 in 'x/y.parquet'"), offline) is None
    wrapped = RuntimeError("loading the judge failed")
    wrapped.__cause__ = OSError(
        "'org/m' is not in the cache and outgoing traffic has been disabled"
    )
    assert "needed 'org/m'" in offline_hint(wrapped, offline)


def test_marker_names_are_unique_per_split_and_subset() -> None:
    a = HubItem("dataset", "org/d", "k", split="train")
    b = HubItem("dataset", "org/d", "k", subset="de", split="train")
    assert item_slug(a) == "org--d@train" and item_slug(b) == "org--d@de@train"
