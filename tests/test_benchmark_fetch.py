"""A folder benchmark whose data is a Hub dataset (data.hub_dataset, no data.path): rule
benchmark_fetch downloads it through the hub client's cache and the items are built from the
download. Run offline against a cache laid out as snapshot_download leaves it (no network here),
holding the demo's BLEnD files; the items equal those built from the local folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.evals import load_benchmark

DATASET = "polyculture-test/blend"
COUNTRIES = ["US", "UK", "Greece", "South_Korea"]


def _cache_dataset(hf_home: Path, source: Path) -> None:
    """`source`'s BLEnD folders as data/ of DATASET at main in the hub cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"datasets--{DATASET.replace('/', '--')}"
    for sub in ("questions", "annotations", "prompts"):
        shutil.copytree(source / sub, repo / "snapshots" / commit / "data" / sub)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_dataset_is_fetched_and_its_items_built(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    hf_home = tmp_path / "hf"
    _cache_dataset(hf_home, work / "resources/demo/blend")
    entry = {
        "name": "blend-mcq",
        "data": {"path": None, "hub_dataset": DATASET, "hub_revision": "main"},
        "groups": {"values": COUNTRIES},
    }
    over = tmp_path / "hub.yaml"
    over.write_text(yaml.safe_dump({"evaluate": {"benchmarks": [entry]}}), encoding="utf-8")
    target = "results/evaluate/blend-mcq/items.parquet"
    # the target before --configfile (which takes several values)
    run_snakemake(
        work, target, "--configfile", "config.yaml", str(over), env={"HF_HOME": str(hf_home)}
    )
    fetched = work / "results/evaluate/blend-mcq/data"
    assert sorted(p.name for p in (fetched / "questions").iterdir()) == sorted(
        p.name for p in (work / "resources/demo/blend/questions").iterdir()
    )
    assert (work / "results/logs/benchmark_fetch/blend-mcq.log").is_file()
    local = load_benchmark(
        "blend-mcq",
        {"data": {"path": str(work / "resources/demo/blend")}, "groups": {"values": COUNTRIES}},
    )
    expected = local.implementation().items(local.settings)
    assert pl.read_parquet(work / target).equals(expected)
