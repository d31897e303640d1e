"""The train rules in the session's demo run: one LoRA adapter per variant, its loss table and
figure with the held-out loss, TensorBoard logs read back, the summary and drop tables, an
adapter that loads onto the base and changes it, a model card per adapter whose numbers are the
evaluation tables', and the optional merge and push rules run on the demo's adapters."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import run_snakemake

from polyculture import train as T
from polyculture.io import read_table
from polyculture.model_card import MACRO, parse_card

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
        every = demo_train["heldout"]["eval_steps"]
        held = losses.filter(pl.col("heldout_loss").is_not_null())
        assert held["step"].to_list() == list(range(every, demo_train["max_steps"] + 1, every))
        assert held["heldout_loss"].is_finite().all()
        assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
        log = (demo_run / "results" / "logs" / "train_lora" / f"{variant}.log").read_text()
        assert f"training {variant}:" in log and "polyculture.train --job" in log
        assert "held out" in log and "from scratch" in log
        assert (demo_run / "results" / "benchmarks" / "train_lora" / f"{variant}.tsv").is_file()


def test_summary_and_drop_tables(demo_run: Path, demo_train: dict) -> None:
    train = demo_run / "results" / "train"
    summary = pl.read_csv(train / "summary.tsv", separator="\t")
    assert summary["variant"].to_list() == demo_train["variants"]
    assert (summary["steps"] == demo_train["max_steps"]).all()
    assert (summary["resumed_steps"] == 0).all()
    assert (summary["examples_used"] > 0).all() and (summary["examples_heldout"] > 0).all()
    assert (
        summary["examples_used"] + summary["examples_heldout"] + summary["examples_dropped"]
        == summary["examples_in"]
    ).all()
    assert summary["final_heldout_loss"].is_finite().all()
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


def test_tensorboard_logs_hold_the_training_and_heldout_curves(
    demo_run: Path, demo_train: dict
) -> None:
    assert demo_train["report_to"] == "tensorboard"
    for variant in demo_train["variants"]:
        out = demo_run / "results" / "train" / variant
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tracking"]["run_name"] == f"demo-{variant}"
        tb = demo_run / summary["tracking"]["tensorboard_dir"]
        assert tb.parent == out / "run" / "tensorboard" and list(tb.glob("events.out.tfevents.*"))
        scalars = T.read_tensorboard_scalars(tb)
        losses = pl.read_parquet(out / "loss.parquet")
        for tag, column in (("train/loss", "loss"), ("eval/loss", "heldout_loss")):
            curve = scalars.filter(pl.col("tag") == tag).sort("step")
            rows = losses.filter(pl.col(column).is_not_null())
            assert curve["step"].to_list() == rows["step"].to_list(), (variant, tag)
            assert curve["value"].to_list() == pytest.approx(rows[column].to_list(), rel=1e-6)


def test_heldout_split_counts(demo_run: Path, demo_train: dict) -> None:
    for variant in demo_train["variants"]:
        summary = json.loads(
            (demo_run / "results" / "train" / variant / "summary.json").read_text()
        )
        data = pl.DataFrame(summary["data"])
        assert data["heldout"].sum() == summary["examples_heldout"]
        assert data["train"].sum() == summary["examples_used"]
        assert data["examples"].sum() == summary["examples_in"]
        assert summary["settings"]["heldout_share"] == demo_train["heldout"]["share"]
        # the split is the library's stratified split of this JSONL with the training seed
        records = T.read_training_records(
            demo_run / "results" / "consensus" / variant / "train.jsonl"
        )
        held = T.heldout_split(
            [r.stratum for r in records],
            demo_train["heldout"]["share"],
            summary["settings"]["seed"],
        )
        want = Counter(r.stratum for r, h in zip(records, held, strict=True) if h)
        got = {(r["source"], r["region"], r["language"]): r["heldout"] for r in summary["data"]}
        assert {k: v for k, v in got.items() if v} == dict(want)
        assert summary["examples_heldout"] > 0
        # the JSONL's own counts per source, region and language
        counts = pl.read_parquet(demo_run / "results" / "consensus" / variant / "counts.parquet")
        got = data.group_by("source", "region", "language").agg(pl.col("examples").sum())
        want = counts.rename({"count": "examples"}).select(got.columns)
        assert got.sort(got.columns).equals(want.sort(want.columns).cast(got.schema))


def card_models(demo_run: Path, variant: str) -> list[str]:
    config = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))
    return [m["name"] for m in config["eval_models"] if m.get("adapter") == variant]


def md_rows(text: str, header_start: str) -> list[list[str]]:
    """Rows of the Markdown table whose header row starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_each_adapter_has_a_card_with_its_own_evaluation_numbers(
    demo_run: Path, demo_train: dict
) -> None:
    results = demo_run / "results"
    blend = pl.read_parquet(results / "evaluate" / "compare" / "blend_scores.parquet")
    general = pl.read_parquet(results / "evaluate" / "compare" / "general_scores.parquet")
    alignment = pl.read_parquet(results / "alignment" / "alignment.parquet")
    consistency = pl.read_parquet(results / "alignment" / "self_consistency.parquet")
    for variant in demo_train["variants"]:
        release = results / "release" / variant
        adapter = results / "train" / variant / "adapter"
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            assert (release / name).read_bytes() == (adapter / name).read_bytes()
        front, body = parse_card((release / "README.md").read_text(encoding="utf-8"))
        summary = json.loads((results / "train" / variant / "summary.json").read_text())
        assert front["library_name"] == "peft" and front["license"] == "mit"
        assert "base_model" not in front  # builtin:tiny-chat is not a Hub model
        trained = {r["language"] for r in summary["data"] if r["train"]}
        assert front["language"] == sorted(trained)
        assert {"lora", "peft", "polyculture"} <= set(front["tags"])
        (model,) = card_models(demo_run, variant)
        (entry,) = front["model-index"]
        assert entry["name"] == model
        metrics = {m["name"]: m["value"] for r in entry["results"] for m in r["metrics"]}
        # BLEnD: per country (mean over templates) and the macro mean over countries
        own = blend.filter(
            (pl.col("model") == model)
            & (pl.col("prompt_id") == "all")
            & ~pl.col("country").str.starts_with("All")  # summary rows, not countries
        )
        rows = md_rows(body, "| country |")
        table = {(r[0], r[1]): r for r in rows}
        for r in own.iter_rows(named=True):
            cells = table[(r["country"], r["language_kind"])]
            assert cells[3] == f"{r['sem_b']:.2f}" and cells[4] == f"{r['sem_w']:.2f}"
        for kind, part in own.group_by("language_kind"):
            kind = kind[0]
            # compare_models' macro mean (country 'All'): the mean over the countries
            (headline,) = blend.filter(
                (pl.col("model") == model)
                & (pl.col("prompt_id") == "all")
                & (pl.col("country") == "All")
                & (pl.col("language_kind") == kind)
            ).iter_rows(named=True)
            macro_b, macro_w = headline["sem_b"], headline["sem_w"]
            assert macro_b == pytest.approx(part["sem_b"].mean())
            assert macro_w == pytest.approx(part["sem_w"].mean())
            cells = table[(f"**{MACRO}**", kind)]
            assert cells[3] == f"{macro_b:.2f}" and cells[4] == f"{macro_w:.2f}"
            assert metrics[f"SEM-B {MACRO} ({kind} questions)"] == pytest.approx(macro_b, abs=1e-4)
            assert metrics[f"SEM-W {MACRO} ({kind} questions)"] == pytest.approx(macro_w, abs=1e-4)
        # general benchmarks
        for r in general.filter(pl.col("model") == model).iter_rows(named=True):
            key = f"{r['benchmark']} {r['task']} ({r['language']})"
            assert metrics[key] == pytest.approx(r["value"], abs=1e-4)
        # WVS alignment and self-consistency of this model, not another's
        align_rows = md_rows(body, "| level |")
        mine = alignment.filter((pl.col("model") == model) & (pl.col("unit") == "topic"))
        assert len(align_rows) == mine.height > 0
        for r in mine.iter_rows(named=True):
            want = (
                "–"
                if r["alignment"] is None or r["alignment"] != r["alignment"]
                else f"{r['alignment']:.3f}"
            )
            assert [r["level"], r["language"], r["group"], want] in [a[:4] for a in align_rows]
        cons_rows = md_rows(body, "| language | self-consistency |")
        mine = consistency.filter(pl.col("model") == model).sort("language")
        assert [c[:2] for c in cons_rows] == [
            [
                r["language"],
                "–" if r["consistency"] != r["consistency"] else f"{r['consistency']:.3f}",
            ]
            for r in mine.iter_rows(named=True)
        ]


def test_merge_and_push_rules_on_the_demo_adapter(demo_run: Path, demo_train: dict) -> None:
    """The optional rules, asked for by target (merge) and with push enabled to a local
    directory target (a config like the demo's plus push_to_hub)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    variant = demo_train["variants"][0]
    config = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))
    config["train"]["push_to_hub"] = {
        "enabled": True,
        "repo_id": "polyculture-demo/tiny-chat-{variant}",
        "local_dir": "results/hub",
    }
    (demo_run / "config-push.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = run_snakemake(
        demo_run,
        f"results/release/merged/{variant}",
        f"results/release/pushed/{variant}.json",
        "--configfile",
        "config-push.yaml",
        # the session's demo ran with the fixture's own command line; a params difference
        # between it and this re-dumped config is the test's, not the rules': what must hold is
        # that merge and push invalidate no file the training or the card produced
        "--rerun-triggers",
        "mtime",
    )
    ran = proc.stdout + proc.stderr
    assert "rule merge_adapter:" in ran and "rule push_to_hub:" in ran
    assert "rule train_lora:" not in ran and "rule model_card:" not in ran  # nothing else reran
    # merged: a plain transformers model that computes what base + adapter computes
    merged_dir = demo_run / "results" / "release" / "merged" / variant
    names = {p.name for p in merged_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    tok = AutoTokenizer.from_pretrained(merged_dir)
    assert tok.chat_template  # ready for a chat server
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is eaten at New Year in Spain?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(demo_run / "results" / "models" / "tiny-chat")
    adapter = demo_run / "results" / "train" / variant / "adapter"
    with torch.no_grad():
        want = PeftModel.from_pretrained(base, str(adapter)).eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged_dir).eval()(ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    # pushed to the local target: the release directory's files, as the receipt lists them
    receipt = json.loads(
        (demo_run / "results" / "release" / "pushed" / f"{variant}.json").read_text()
    )
    repo = demo_run / "results" / "hub" / "polyculture-demo" / f"tiny-chat-{variant}"
    assert receipt["repo_id"] == f"polyculture-demo/tiny-chat-{variant}"
    assert sorted(receipt["files"]) == sorted(p.name for p in repo.iterdir())
    release = demo_run / "results" / "release" / variant
    for name in receipt["files"]:
        assert (repo / name).read_bytes() == (release / name).read_bytes()
