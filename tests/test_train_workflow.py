"""The train rules in the session's demo run: one LoRA adapter per variant, its loss table and
figure, the summary and drop tables, and an adapter that loads onto the base and changes it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from polyculture.io import read_table

pytestmark = pytest.mark.workflow

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def demo_train(demo_run: Path) -> dict:
    config = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))
    return config["train"]


def test_an_adapter_per_variant(demo_run: Path, demo_train: dict) -> None:
    for variant in demo_train["variants"]:
        adapter = demo_run / "results" / "train" / variant / "adapter"
        assert (adapter / "adapter_model.safetensors").stat().st_size > 0
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == 16
        assert {m.rsplit(".", 1)[-1] for m in config["target_modules"]} == LINEAR
        assert not list(adapter.parent.glob(".adapter.*.tmp"))  # no temp dir left behind


def test_loss_tables_figures_and_logs(demo_run: Path, demo_train: dict, repo_root: Path) -> None:
    schema = repo_root / "schemas" / "tables" / "train_loss.schema.yaml"
    for variant in demo_train["variants"]:
        out = demo_run / "results" / "train" / variant
        losses = read_table(out / "loss.parquet", schema)
        assert losses["step"].to_list() == list(range(1, demo_train["max_steps"] + 1))
        assert losses["loss"].is_finite().all() and (losses["loss"] > 0).all()
        assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
        log = (demo_run / "results" / "logs" / "train_lora" / f"{variant}.log").read_text()
        assert f"training {variant}:" in log and "polyculture.train --job" in log
        assert (demo_run / "results" / "benchmarks" / "train_lora" / f"{variant}.tsv").is_file()


def test_summary_and_drop_tables(demo_run: Path, demo_train: dict) -> None:
    train = demo_run / "results" / "train"
    summary = pl.read_csv(train / "summary.tsv", separator="\t")
    assert summary["variant"].to_list() == demo_train["variants"]
    assert (summary["steps"] == demo_train["max_steps"]).all()
    assert (summary["examples_used"] > 0).all()
    assert (summary["examples_used"] + summary["examples_dropped"] == summary["examples_in"]).all()
    drops = pl.read_parquet(train / "drops.parquet")
    assert sorted(drops["group"].unique().to_list()) == sorted(demo_train["variants"])
    assert (drops["stage"] == "train_tokenize").all()


def test_adapter_loads_onto_the_base_and_changes_it(demo_run: Path, demo_train: dict) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = demo_run / "results" / "models" / "tiny-chat"
    adapter = demo_run / "results" / "train" / demo_train["variants"][0] / "adapter"
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is eaten at New Year in Spain?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter))
        after = tuned(ids).logits
    assert not torch.allclose(before, after)
