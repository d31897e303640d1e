"""General capability through lm-evaluation-harness on the demo's local task files, with the
built-in tiny chat model (base, LoRA adapter applied at load time, and the adapter merged)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from polyculture import general_eval as ge
from polyculture.errors import ConfigError

SPECS = [
    {"task": "demo_hellaswag_el", "benchmark": "hellaswag", "language": "el", "metric": "acc_norm"},
    {"task": "demo_global_mmlu_en", "benchmark": "global_mmlu", "language": "en"},
]
LIMIT = 3


def test_task_specs_are_checked() -> None:
    specs = ge.task_specs(SPECS)
    assert specs[1] == ge.TaskSpec("demo_global_mmlu_en", "global_mmlu", "en", "acc")
    with pytest.raises(ConfigError, match=r"tasks\[0\].*missing benchmark"):
        ge.task_specs([{"task": "x", "language": "en"}])
    with pytest.raises(ConfigError, match="listed twice: x"):
        ge.task_specs([{"task": "x", "benchmark": "b", "language": "en"}] * 2)


def test_model_arguments_per_backend(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12, "peft_type": "LORA"}))
    kind, args = ge.lm_eval_model(
        str(tmp_path), adapter=str(adapter), backend="hf", dtype="float32"
    )
    assert kind == "hf" and args["peft"] == str(adapter) and args["pretrained"] == str(tmp_path)
    assert args["dtype"] == "float32" and "tokenizer" not in args
    # an adapter that ships its own tokenizer (and chat template) is evaluated with it
    (adapter / "tokenizer_config.json").write_text("{}")
    _, args = ge.lm_eval_model(str(tmp_path), adapter=str(adapter), backend="hf")
    assert args["tokenizer"] == str(adapter)
    kind, args = ge.lm_eval_model(
        "org/model", adapter=str(adapter), backend="vllm", vllm_options={"vllm_max_model_len": 2048}
    )
    assert kind == "vllm" and args["pretrained"] == "org/model"
    assert (args["lora_local_path"], args["max_lora_rank"], args["max_model_len"]) == (
        str(adapter),
        16,
        2048,
    )
    with pytest.raises(ConfigError, match="unknown lm_eval backend"):
        ge.lm_eval_model("m", backend="tgi")


@pytest.fixture(scope="module")
def tiny_chat(builtin_models: dict[str, Path]) -> str:
    return str(builtin_models["tiny-chat"])


@pytest.fixture(scope="module")
def adapter(tiny_chat: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A LoRA adapter with random (non-zero) weights, so it changes the model's scores."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    get_peft_model(model, cfg).save_pretrained(path)
    return str(path)


def evaluate(model: str, adapter: str | None, repo_root: Path, tmp: Path, merge: bool = False):
    specs = ge.task_specs(SPECS)
    model, adapter = ge.prepare_model(model, adapter, merge, str(tmp))
    kind, args = ge.lm_eval_model(model, adapter=adapter, backend="hf", dtype="float32")
    results = ge.run_lm_eval(
        kind,
        args,
        specs,
        task_dir=repo_root / "resources/demo/lm_eval",
        limit=LIMIT,
        batch_size=4,
        seed=7,
    )
    items = ge.item_table(results, specs, "m")
    ge.check_items(items, specs)
    return results, items


def loglikelihoods(results: dict) -> list[float]:
    return [
        ll
        for task in sorted(results["samples"])
        for s in results["samples"][task]
        for ll, _ in s["filtered_resps"]
    ]


def test_lm_eval_base_adapter_and_merged(
    tiny_chat: str, adapter: str, repo_root: Path, tmp_path: Path
) -> None:
    base, items = evaluate(tiny_chat, None, repo_root, tmp_path)
    # 3 HellaSwag-style items (acc and acc_norm) and 3 MMLU-style items (acc)
    assert items.height == LIMIT * 2 + LIMIT
    assert set(items["doc_id"].to_list()) == set(range(LIMIT))
    assert items["value"].is_in([0.0, 1.0]).all()
    assert set(items["subtask"].to_list()) == {"demo_hellaswag_el", "demo_global_mmlu_en"}
    metrics = ge.metric_table(items)
    acc_norm = metrics.filter(
        (pl.col("task") == "demo_hellaswag_el") & (pl.col("metric") == "acc_norm")
    )
    assert acc_norm["n"][0] == LIMIT
    assert acc_norm["value"][0] == pytest.approx(
        base["results"]["demo_hellaswag_el"]["acc_norm,none"]
    )
    assert metrics.height == 3  # acc and acc_norm of HellaSwag, acc of MMLU
    compared = ge.metric_table(items, ge.task_specs(SPECS))
    assert compared.select("task", "metric").rows() == [
        ("demo_global_mmlu_en", "acc"),
        ("demo_hellaswag_el", "acc_norm"),
    ]
    # per-sample logs: documents, four loglikelihoods per HellaSwag item, JSON-safe
    records = ge.sample_records(base, "m")
    assert len(records) == 2 * LIMIT
    hs = [r for r in records if r["task"] == "demo_hellaswag_el"]
    assert len(hs[0]["filtered_resps"]) == 4 and "ctx_a" in hs[0]["doc"]
    json.dumps(records)
    summary = ge.run_summary(base)
    assert (
        "date" not in summary and summary["n-samples"]["demo_global_mmlu_en"]["effective"] == LIMIT
    )

    with_adapter, a_items = evaluate(tiny_chat, adapter, repo_root, tmp_path)
    assert loglikelihoods(with_adapter) != pytest.approx(loglikelihoods(base), abs=1e-3)
    merged, m_items = evaluate(tiny_chat, adapter, repo_root, tmp_path / "m", merge=True)
    assert loglikelihoods(merged) == pytest.approx(loglikelihoods(with_adapter), rel=1e-4, abs=1e-3)
    assert (
        m_items["doc_hash"].to_list()
        == a_items["doc_hash"].to_list()
        == items["doc_hash"].to_list()
    )


def test_prompt_format_per_task_with_section_defaults() -> None:
    entries = [
        {"task": "a", "benchmark": "b", "language": "en"},
        {"task": "c", "benchmark": "b", "language": "el", "apply_chat_template": False},
        {
            "task": "d",
            "benchmark": "b",
            "language": "el",
            "fewshot_as_multiturn": True,
            "system_instruction": "Answer briefly.",
        },
    ]
    defaults = {
        "apply_chat_template": True,
        "fewshot_as_multiturn": False,
        "system_instruction": None,
    }
    a, c, d = ge.task_specs(entries, defaults)
    assert a.prompt_format == (True, False, None)
    assert c.prompt_format == (False, False, None)  # the task's own setting wins
    assert d.prompt_format == (True, True, "Answer briefly.")
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.fewshot_as_multiturn"):
        ge.task_specs(
            [{**entries[0], "fewshot_as_multiturn": True}], {"apply_chat_template": False}
        )
    # lm_eval's own default when nothing is configured: no chat template
    assert ge.task_specs(entries[:1])[0].prompt_format == (False, False, None)


def test_results_of_several_lm_eval_calls_merge_per_task() -> None:
    first = {"results": {"a": {"acc,none": 0.5}}, "samples": {"a": [1]}, "config": {"x": 1}}
    second = {"results": {"c": {"acc,none": 1.0}}, "samples": {"c": [2]}, "config": {"x": 2}}
    merged = ge.merge_results(ge.merge_results({}, first), second)
    assert merged["results"] == {"a": {"acc,none": 0.5}, "c": {"acc,none": 1.0}}
    assert merged["samples"] == {"a": [1], "c": [2]}
    assert merged["config"] == {"x": 1}  # run-level keys: the first call's


def test_items_keep_global_mmlus_cultural_label() -> None:
    results = {
        "samples": {
            "t": [
                {
                    "doc_id": 0,
                    "doc": {"cultural_sensitivity_label": "CS"},
                    "metrics": ["acc"],
                    "acc": 1.0,
                },
                {
                    "doc_id": 1,
                    "doc": {"cultural_sensitivity_label": "ca "},
                    "metrics": ["acc"],
                    "acc": 0.0,
                },
                {"doc_id": 2, "doc": {"question": "q"}, "metrics": ["acc"], "acc": 1.0},
            ]
        }
    }
    items = ge.item_table(results, [ge.TaskSpec("t", "global_mmlu", "en")], "m")
    assert items["cultural_label"].to_list() == ["CS", "CA", None]


def test_batch_size_defaults_to_auto_on_vllm_and_8_on_hf() -> None:
    assert ge.batch_size_for("vllm", None) == "auto"
    assert ge.batch_size_for("hf", None) == 8
    assert ge.batch_size_for("vllm", 32) == 32
    assert ge.batch_size_for("hf", "auto:4") == "auto:4"
    for bad in (0, "big", "auto:0", True):
        with pytest.raises(ConfigError, match="evaluate.general.batch_size"):
            ge.batch_size_for("vllm", bad)


def test_config_schema_takes_auto_and_null_batch_sizes() -> None:
    import copy

    import yaml

    from polyculture.config_check import validate_config

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config.yaml").read_text(encoding="utf-8"))
    schema = repo / "schemas" / "config.schema.yaml"
    for value, want in (("auto", "auto"), ("auto:16", "auto:16"), (None, None), (4, 4)):
        c = copy.deepcopy(config)
        c["evaluate"]["general"]["batch_size"] = value
        validate_config(c, schema)
        assert c["evaluate"]["general"]["batch_size"] == want
    c = copy.deepcopy(config)
    del c["evaluate"]["general"]["batch_size"]
    validate_config(c, schema)
    assert c["evaluate"]["general"]["batch_size"] is None  # per backend: auto on vLLM
    c["evaluate"]["general"]["batch_size"] = "large"
    with pytest.raises(ConfigError, match=r"evaluate\.general\.batch_size"):
        validate_config(c, schema)
