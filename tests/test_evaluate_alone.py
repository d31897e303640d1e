"""Evaluation alone, run for real (issue 27, "Done when"): an evaluation-only config made from
configs/templates/evaluate.yaml with a base model (a local model directory: the session's
built tiny-chat) and a PEFT LoRA adapter saved outside the workflow's results; the workflow
runs BLEnD and blend-mcq for both and writes the paired adapter-vs-base comparison of each.
Few questions and one lm-eval task of two items keep it cheap."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow

BASE, MINE = "tiny", "tiny-mine"
#: a chat template of the adapter's own (PEFT saves none; a user who changed the template
#: during training ships it beside the adapter, as transformers' save_pretrained writes it)
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def outside_adapter(
    builtin_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A LoRA adapter of the built tiny-chat, saved by PEFT into a directory of its own (not
    under any workflow's results), with its own chat template."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = builtin_models["tiny-chat"]
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(base)
    # random (not zero) B matrices: the adapter changes the model's answers' log-probabilities
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    dest = tmp_path_factory.mktemp("elsewhere") / "my-lora"
    get_peft_model(lm, lora).save_pretrained(dest)
    (dest / "chat_template.jinja").write_text(TEMPLATE, encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def evaluate_alone(
    builtin_models: dict[str, Path], outside_adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One run of an evaluation-only config: the template's pipelines and prompts, the demo's
    BLEnD data (2 countries, first 3 questions), blend-mcq on the demo's 4 countries (first 4
    questions), one demo lm-eval task (2 items)."""
    work = copy_workflow(tmp_path_factory.mktemp("evaluate-alone"))
    cfg = yaml.safe_load((REPO / "configs/templates/evaluate.yaml").read_text(encoding="utf-8"))
    model = str(builtin_models["tiny-chat"])
    cfg["eval_models"] = [
        {"name": BASE, "model": model},
        {"name": MINE, "model": model, "adapter": str(outside_adapter)},
    ]
    cfg["evaluate"]["blend"].update(
        data_path="resources/demo/blend",
        countries=["US", "Greece"],
        max_questions=3,
        sampling={"temperature": 0, "max_new_tokens": 16},
        max_drop_rate=1.0,
    )
    cfg["evaluate"]["general"] = {
        "tasks_path": "resources/demo/lm_eval",
        "tasks": [
            {"task": "demo_hellaswag_en", "benchmark": "hellaswag", "language": "en",
             "metric": "acc_norm"},
        ],
        "limit": 2,
    }  # fmt: skip
    cfg["evaluate"]["compare"] = {"n_boot": 200}
    cfg["evaluate"]["benchmarks"] = [
        {
            "name": "blend-mcq",
            "data": {"path": "resources/demo/blend"},
            "groups": {"values": ["US", "UK", "Greece", "South_Korea"]},
            "construction": {"max_questions": 4},
        }
    ]
    cfg["backend"] = {"generation": "hf", "batch_size": 16}
    (work / "eval.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    run_snakemake(work, "--configfile", "eval.yaml", timeout=1200)
    return work / "results"


def test_both_models_are_scored_on_blend_and_blend_mcq(evaluate_alone: Path) -> None:
    ev = evaluate_alone / "evaluate"
    for m in (BASE, MINE):
        scores = pl.read_parquet(ev / "blend" / m / "scores.parquet")
        assert scores.height and set(scores["country"]) >= {"US", "Greece"}, scores
        mcq = pl.read_parquet(ev / "blend-mcq" / m / "scores.parquet")
        assert mcq.height and set(mcq["model"]) == {m}
        assert set(mcq["group"]) == {"US", "UK", "Greece", "South_Korea"}
    # nothing of the other pipelines ran: no consensus data, training, WVS or alignment
    assert {p.name for p in evaluate_alone.iterdir()} & {
        "consensus", "train", "wvs", "alignment"
    } == set()  # fmt: skip
    # the adapter is an input as it is: nothing was trained or copied under results/train
    assert not (evaluate_alone / "train").exists()


def test_the_outside_adapter_is_compared_with_its_base_on_every_benchmark(
    evaluate_alone: Path, outside_adapter: Path
) -> None:
    ev = evaluate_alone / "evaluate"
    blend = pl.read_parquet(ev / "compare" / "blend_comparison.parquet")
    assert set(zip(blend["model"], blend["base"], strict=True)) == {(MINE, BASE)}
    assert set(blend["variant"]) == {str(outside_adapter)}
    assert {"US", "Greece", "All"} <= set(blend["country"])
    assert blend["p_sem_b"].is_between(0, 1).all(), blend.columns
    mcq = pl.read_parquet(ev / "blend-mcq" / "comparison.parquet")
    assert set(zip(mcq["model"], mcq["base"], strict=True)) == {(MINE, BASE)}
    assert set(mcq["group"]) >= {"US", "UK", "Greece", "South_Korea"}
    doc = json.loads((ev / "blend-mcq" / "summary.json").read_text(encoding="utf-8"))
    assert set(doc["headline"]["by_model"]) == {BASE, MINE}
    assert {(c["model"], c["base"]) for c in doc["comparisons"]} == {(MINE, BASE)}
    md = (ev / "blend-mcq" / "summary.md").read_text(encoding="utf-8")
    assert f"| {MINE} | {BASE} |" in md
    # lm-eval ran both models too (its comparison pairs them as well)
    general = pl.read_parquet(ev / "compare" / "general_comparison.parquet")
    assert set(zip(general["model"], general["base"], strict=True)) == {(MINE, BASE)}


def test_the_adapters_results_say_where_it_came_from(
    evaluate_alone: Path, outside_adapter: Path
) -> None:
    """The BLEnD comparison and the benchmark's summaries name the adapter directory, say that
    it came from outside the workflow and that it was loaded with its own chat template."""
    ev = evaluate_alone / "evaluate"
    note = (
        f"{MINE}: adapter {outside_adapter} (a PEFT directory from outside this workflow) "
        "loaded with its own chat template"
    )
    said = (ev / "compare" / "comparison.md").read_text(encoding="utf-8")
    assert note in said, said
    assert note in (ev / "blend-mcq" / "summary.md").read_text(encoding="utf-8")
    doc = json.loads((ev / "blend-mcq" / "summary.json").read_text(encoding="utf-8"))
    mine = doc["models"][MINE]
    assert mine["adapter"] == str(outside_adapter) and mine["adapter_source"] == "directory"
    assert (mine["tokenizer"], mine["chat_template"]) == ("base model", "adapter")
    assert mine["embedding_rows"] is None
    assert doc["models"][BASE]["adapter"] is None
    assert note in doc["notes"]


def test_the_adapter_was_applied(evaluate_alone: Path) -> None:
    """The adapter changed the answers (its random LoRA weights and its own template), in
    BLEnD's engine shared with the base model and in blend-mcq's generation job alike."""
    ev = evaluate_alone / "evaluate"
    for table in ("blend/{m}/answers/US.parquet", "blend-mcq/{m}/responses.parquet"):
        base, mine = (pl.read_parquet(ev / table.format(m=m)) for m in (BASE, MINE))
        assert base.drop("response").equals(mine.drop("response"))
        assert base["response"].to_list() != mine["response"].to_list(), table
