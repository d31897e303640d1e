"""Eval models from anywhere (issue 27): adapters from training variants, local PEFT directories
and hub ids; `base` as the paired comparison's baseline; API models on BLEnD with lm-eval
skipped. Config-check units, pairing units and one `snakemake -n` of an outside adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture import compare as cmp
from polyculture.config_check import (
    adapter_base_agrees,
    adapter_kind,
    api_models_used,
    builtin_models_used,
    check_api_models,
    config_summary,
    config_warnings,
    cross_key_problems,
    eval_model_problems,
    groups_in_use,
    lm_eval_refused,
    lm_eval_skipped,
)
from polyculture.errors import ConfigError, InputError
from polyculture.prefetch import HubItem, check_adapter, hub_items


def adapter_dir(path: Path, base: str | None = "meta-llama/Llama-3.1-8B-Instruct") -> Path:
    """A directory holding an adapter_config.json as PEFT writes it (no weights: the config
    check reads only the config)."""
    path.mkdir(parents=True)
    cfg = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]}
    if base is not None:
        cfg["base_model_name_or_path"] = base
    (path / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return path


def config(*models: dict, **over: object) -> dict:
    cfg = {
        "pipelines": {
            "consensus": False,
            "train": False,
            "evaluate": True,
            "wvs": False,
            "alignment": False,
        },
        "train": {"variants": ["full", "random_selection"]},
        "backend": {"openai": {}},
        "eval_models": list(models),
    }
    cfg.update(over)
    return cfg


LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def problems(cfg: dict, workdir: Path) -> list[str]:
    return [str(p) for p in eval_model_problems(cfg, workdir)]


def test_adapter_kinds(tmp_path: Path) -> None:
    adapter_dir(tmp_path / "my-lora")
    variants = ["full"]
    assert adapter_kind("full", variants, tmp_path) == "variant"
    assert adapter_kind("my-lora", variants, tmp_path) == "directory"  # relative to workdir
    assert adapter_kind(str(tmp_path / "my-lora"), variants, None) == "directory"
    assert adapter_kind("someone/llama-lora", variants, tmp_path) == "hub"
    assert adapter_kind("no such thing", variants, tmp_path) is None
    assert adapter_kind("./missing/dir", variants, tmp_path) is None
    (tmp_path / "full").mkdir()
    assert adapter_kind("full", variants, tmp_path) == "variant"  # the variant's name wins


def test_each_accepted_adapter_form_passes_the_check(tmp_path: Path) -> None:
    lora = adapter_dir(tmp_path / "scratch" / "my-lora")
    cfg = config(
        {"name": "base", "model": LLAMA},
        {"name": "trained", "model": LLAMA, "adapter": "full"},
        {"name": "outside", "model": LLAMA, "adapter": str(lora)},
        {"name": "relative", "model": LLAMA, "adapter": "scratch/my-lora"},
        {"name": "hub", "model": LLAMA, "adapter": "someone/llama-lora"},
        {"name": "vs-trained", "model": LLAMA, "adapter": "random_selection", "base": "trained"},
    )
    assert problems(cfg, tmp_path) == []
    assert config_warnings(cfg, tmp_path) == []


def test_bad_adapters_and_bases_are_each_named(tmp_path: Path) -> None:
    empty = tmp_path / "not-an-adapter"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json", encoding="utf-8")
    cfg = config(
        {"name": "base", "model": LLAMA},
        {"name": "a", "model": LLAMA, "adapter": str(empty)},
        {"name": "b", "model": LLAMA, "adapter": "./gone/lora"},
        {"name": "c", "model": LLAMA, "adapter": "ful"},
        {"name": "d", "model": LLAMA, "adapter": str(broken)},
        {"name": "e", "model": LLAMA, "base": "bsae"},
        {"name": "f", "model": LLAMA, "base": "f"},
    )
    found = problems(cfg, tmp_path)
    assert len(found) == 6, found  # every problem, not only the first
    a, b, c, d, e, f = found
    assert "'eval_models[1].adapter'" in a and str(empty / "adapter_config.json") in a
    assert "does not exist" in a
    assert "'eval_models[2].adapter'" in b and "does not exist" in b
    assert "'eval_models[3].adapter'" in c and "neither a training variant" in c
    assert "did you mean 'full'?" in c
    assert "'eval_models[4].adapter'" in d and "not valid JSON" in d
    assert "'eval_models[5].base'" in e and "names no eval_models entry" in e
    assert "did you mean 'base'?" in e
    assert "'eval_models[6].base'" in f and "this entry itself" in f
    # the same problems through the full cross-key check
    assert {p.key for p in cross_key_problems(cfg, tmp_path, {})} >= {
        f"eval_models[{i}].adapter" for i in range(1, 5)
    }


def test_adapter_of_another_base_model_is_a_warning_naming_both(tmp_path: Path) -> None:
    lora = adapter_dir(tmp_path / "qwen-lora", base="Qwen/Qwen2.5-7B-Instruct")
    cfg = config({"name": "mine", "model": LLAMA, "adapter": str(lora)})
    assert problems(cfg, tmp_path) == []
    (warning,) = config_warnings(cfg, tmp_path)
    assert "eval_models[0].adapter" in warning
    assert "Qwen/Qwen2.5-7B-Instruct" in warning and LLAMA in warning
    # no recorded base: nothing to compare, no warning
    bare = adapter_dir(tmp_path / "bare", base=None)
    assert (
        config_warnings(config({"name": "m", "model": LLAMA, "adapter": str(bare)}), tmp_path) == []
    )


def test_base_agreement_accepts_local_copies_of_the_model(tmp_path: Path) -> None:
    assert adapter_base_agrees(LLAMA, LLAMA)
    assert adapter_base_agrees(LLAMA, f"/scratch/models/{LLAMA}")
    assert adapter_base_agrees(
        LLAMA, "/hf/hub/models--meta-llama--Llama-3.1-8B-Instruct/snapshots/abc"
    )
    assert not adapter_base_agrees(LLAMA, "meta-llama/Llama-3.2-1B-Instruct")
    assert adapter_base_agrees("builtin:tiny-chat", "/somewhere/results/models/tiny-chat")
    model = tmp_path / "model"
    model.mkdir()
    assert adapter_base_agrees(str(model), str(tmp_path / "." / "model"))
    assert not adapter_base_agrees(str(model), str(tmp_path))


def test_hub_adapters_are_prefetched_and_checked_once_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(
        {"name": "base", "model": LLAMA},
        {"name": "hub", "model": LLAMA, "adapter": "someone/llama-lora"},
        {"name": "trained", "model": LLAMA, "adapter": "full"},
    )
    items = [i for i in hub_items(cfg) if i.kind == "adapter"]
    assert items == [HubItem("adapter", "someone/llama-lora", "eval_models[1].adapter", base=LLAMA)]
    item = items[0]
    good = adapter_dir(tmp_path / "snapshot-good")
    check_adapter(item, good)
    other = adapter_dir(tmp_path / "snapshot-other", base="Qwen/Qwen2.5-7B-Instruct")
    with caplog.at_level("WARNING"):
        check_adapter(item, other)
    assert "eval_models[1].adapter" in caplog.text and "Qwen/Qwen2.5-7B-Instruct" in caplog.text
    empty = tmp_path / "snapshot-empty"
    empty.mkdir()
    with pytest.raises(InputError, match="adapter_config.json: does not exist"):
        check_adapter(item, empty)


def test_pairs_follow_base_and_default_to_the_same_model_without_adapter() -> None:
    models = [
        {"name": "base", "model": "m"},
        {"name": "full", "model": "m", "adapter": "full"},
        {"name": "outside", "model": "m", "adapter": "/scratch/me/lora"},
        {"name": "vs-full", "model": "m", "adapter": "someone/lora", "base": "full"},
        {"name": "big", "model": "M"},
        {"name": "big-vs-small", "model": "M", "base": "base"},
    ]
    pairs, notes = cmp.pair_models(models)
    assert pairs == [
        cmp.Pair("full", "base", "full"),
        cmp.Pair("outside", "base", "/scratch/me/lora"),
        cmp.Pair("vs-full", "full", "someone/lora"),
        cmp.Pair("big-vs-small", "base", "big-vs-small"),
    ]
    assert notes == []
    kept, left = cmp.pairs_with_results(
        pairs, ["base", "full", "vs-full"], "the general benchmarks"
    )
    assert kept == [cmp.Pair("full", "base", "full"), cmp.Pair("vs-full", "full", "someone/lora")]
    assert left == [
        "outside vs base is not compared on the general benchmarks: no results of outside there",
        "big-vs-small vs base is not compared on the general benchmarks: no results of "
        "big-vs-small there",
    ]


def gen_task_folder(folder: Path) -> Path:
    """A local lm-eval task folder: one generative task, one multiple-choice task through an
    include, a group of both and a tag of the generative one."""
    folder.mkdir(parents=True)
    (folder / "_mc_yaml").write_text(
        "output_type: multiple_choice\ndataset_path: json\ndoc_to_choice: ['A', 'B']\n",
        encoding="utf-8",
    )
    (folder / "mc.yaml").write_text("include: _mc_yaml\ntask: demo_mc\n", encoding="utf-8")
    (folder / "gen.yaml").write_text(
        "task: demo_gen\ntag: [gen_tag]\ndataset_path: json\n"
        "process_docs: !function utils.process\ngeneration_kwargs: {until: ['\\n']}\n",
        encoding="utf-8",
    )
    (folder / "both.yaml").write_text("group: demo_both\ntask: [demo_gen, demo_mc]\n")
    return folder


def test_api_models_run_generative_lm_eval_tasks_and_are_refused_the_others(
    tmp_path: Path,
) -> None:
    env = {"OPENAI_API_KEY": "x"}
    served = "openai@http://localhost:8000/v1:llama3:8b"
    hub = [{"task": "hellaswag", "benchmark": "hellaswag", "language": "en"}]
    cfg = config(
        {"name": "local", "model": LLAMA},
        {"name": "served", "model": served},
        evaluate={"general": {"tasks": hub}, "blend": {"prompt_format": "chat"}},
    )
    check_api_models(cfg, env)  # no longer refused for the whole pipeline
    # lm_eval's own tasks: told apart in the job (where lm_eval's index is), so it is planned
    assert lm_eval_refused(cfg) == {} and lm_eval_skipped(cfg) == {}
    (warning,) = config_warnings(cfg)
    assert "'served'" in warning and "hellaswag" in warning and "when its lm_eval job" in warning
    # a local task folder: told apart here, per task
    folder = gen_task_folder(tmp_path / "tasks")
    local = [
        {"task": t, "benchmark": t, "language": "en"} for t in ("demo_gen", "demo_mc", "demo_both")
    ]
    cfg["evaluate"]["general"] = {"tasks": local, "tasks_path": str(folder)}
    refused = lm_eval_refused(cfg, tmp_path)
    assert list(refused) == ["served"] and sorted(refused["served"]) == ["demo_both", "demo_mc"]
    assert "multiple_choice" in refused["served"]["demo_mc"]
    assert lm_eval_skipped(cfg, tmp_path) == {}  # demo_gen runs: the job is planned
    (warning,) = config_warnings(cfg, tmp_path)
    assert "demo_mc, demo_both are refused" in warning and "demo_gen run through" in warning
    only_mc = {**cfg, "evaluate": {"general": {"tasks": local[1:], "tasks_path": str(folder)}}}
    assert lm_eval_skipped(only_mc, tmp_path) == {"served": ["demo_mc", "demo_both"]}
    off = {**cfg, "pipelines": {**cfg["pipelines"], "evaluate": False}}
    assert lm_eval_refused(off, tmp_path) == {} and config_warnings(off, tmp_path) == []
    raw = {**cfg, "evaluate": {"general": {"tasks": hub}, "blend": {"prompt_format": "raw"}}}
    with pytest.raises(ConfigError, match=r"'eval_models\[1\].model'.*prompt_format: chat"):
        check_api_models(raw, env)


def test_output_types_read_as_lm_eval_reads_task_folders(tmp_path: Path) -> None:
    """The task folder reader agrees with lm_eval's own task index, on a folder with includes,
    a group and a tag, and on lm_eval's bundled ARC folder (generative and multiple-choice)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from polyculture.general_eval import TaskSpec, api_task_split, task_entries
    from polyculture.lm_eval_tasks import entries_from_index, output_types, read_task_folder

    folder = gen_task_folder(tmp_path / "tasks")
    mine = read_task_folder(folder)
    assert output_types("demo_gen", mine) == {"generate_until"}
    assert output_types("gen_tag", mine) == {"generate_until"}
    assert output_types("demo_both", mine) == {"generate_until", "multiple_choice"}
    assert output_types("nothing", mine) == {"unknown"}
    arc = Path(lm_eval.__file__).parent / "tasks" / "arc"
    for where in (folder, arc):
        theirs = entries_from_index(
            TaskManager(include_path=str(where), include_defaults=False).task_index
        )
        assert set(theirs) == set(read_task_folder(where))
        assert {n: output_types(n, theirs) for n in theirs} == {
            n: output_types(n, read_task_folder(where)) for n in theirs
        }
    assert {t for n in theirs for t in output_types(n, theirs)} >= {
        "generate_until",
        "multiple_choice",
    }
    specs = [TaskSpec("demo_mc", "b", "en"), TaskSpec("demo_gen", "b", "en")]
    run, refused = api_task_split(specs, task_entries(folder, ["demo_mc", "demo_gen"]))
    assert [(s.task, s.apply_chat_template) for s in run] == [("demo_gen", True)]
    assert list(refused) == ["demo_mc"]


def test_evaluation_alone_reads_no_other_pipelines_models_or_inputs(tmp_path: Path) -> None:
    """An evaluation-only config with the other sections left as they were (a copy of a full
    config): their models are neither built, fetched nor checked, their input paths not asked
    for; a training variant named as an adapter brings the train (and consensus) groups in."""
    served = "openai@http://localhost:8000/v1:tiny"
    cfg = config(
        {"name": "served", "model": served},
        translator={"kind": "llm", "model": "builtin:tiny-chat"},
        consensus={"generator": "Qwen/Qwen2.5-7B-Instruct", "embedder": "builtin:tiny-embed"},
        wvs={"judge": "openai:gpt-4.1", "microdata_path": str(tmp_path / "gone.csv")},
        evaluate={"general": {"tasks_path": "x", "tasks": []}},
    )
    cfg["pipelines"]["alignment"] = False
    assert groups_in_use(cfg, tmp_path) == {"evaluate"}
    assert builtin_models_used(cfg) == [] and api_models_used(cfg) == [served]
    assert [i.name for i in hub_items(cfg)] == []
    found = [str(p) for p in cross_key_problems(cfg, tmp_path, {"OPENAI_API_KEY": "x"})]
    assert not any(k in p for p in found for k in ("wvs.", "consensus.", "translator")), found
    assert "other models" not in config_summary(cfg)
    # the same config with the WVS pipeline on reads them again
    on = {**cfg, "pipelines": {**cfg["pipelines"], "wvs": True}}
    assert "builtin:tiny-chat" not in str(hub_items(on)) and builtin_models_used(on) == [
        "tiny-chat"
    ]
    assert any("wvs.microdata_path" in str(p) for p in cross_key_problems(on, tmp_path, {}))
    # a training variant as an adapter: train_lora (and the consensus data) are planned
    trained = {**cfg, "eval_models": [{"name": "t", "model": LLAMA, "adapter": "full"}]}
    assert groups_in_use(trained, tmp_path) == {"evaluate", "train", "consensus"}


def test_dry_run_plans_an_outside_adapter_without_training(tmp_path: Path) -> None:
    """An evaluation config with a base model, an adapter directory from outside the workflow
    (paired by `base`) and an API model: the adapter is an input path (no train_lora job), and
    the API model gets BLEnD jobs but no lm_eval job."""
    work = copy_workflow(tmp_path / "wf")
    lora = adapter_dir(tmp_path / "elsewhere" / "my-lora", base="results/models/tiny-chat")
    demo = yaml.safe_load((work / "config.yaml").read_text(encoding="utf-8"))
    demo["pipelines"] = {
        k: k == "evaluate" for k in ("consensus", "train", "evaluate", "wvs", "alignment")
    }
    demo["eval_models"] = [
        {"name": "tiny", "model": "builtin:tiny-chat"},
        {"name": "tiny-mine", "model": "builtin:tiny-chat", "adapter": str(lora), "base": "tiny"},
        {"name": "served", "model": "openai@http://localhost:8000/v1:tiny"},
    ]
    (work / "eval.yaml").write_text(yaml.safe_dump(demo), encoding="utf-8")
    proc = run_snakemake(work, "-n", "--configfile", "eval.yaml", "-p")
    out = proc.stdout + proc.stderr
    assert "train_lora" not in out, out[-3000:]
    assert "blend_generate" in out and "compare_models" in out
    assert "lm_eval" in out
    jobs = [line for line in out.splitlines() if line.strip().startswith(("wildcards:",))]
    assert any("blend_model=tiny-mine" in j for j in jobs), out[-3000:]
    assert any("blend_model=served" in j for j in jobs), out[-3000:]
    assert not any("general_model=served" in j for j in jobs), out[-3000:]
    assert any("general_model=tiny-mine" in j for j in jobs), out[-3000:]
    assert "is an API model; the lm-eval task(s) demo_hellaswag_en" in out and "refused" in out
    assert str(lora) in out  # the adapter directory is the job's input, as it is
    # one benchmark engine per base model: the base with its adapter, and the API model alone,
    # which books no GPU and needs the network
    engines = {
        block.split("wildcards: ")[1].split("\n")[0]: block.split("resources: ")[1].split("\n")[0]
        for block in out.split("rule benchmark_generate:")[1:]
    }
    assert set(engines) == {
        "benchmark=blend-mcq, bench_engine=tiny",
        "benchmark=blend-mcq, bench_engine=served",
    }
    assert "gpu=0" in engines["benchmark=blend-mcq, bench_engine=served"]
    assert "network=1" in engines["benchmark=blend-mcq, bench_engine=served"]
    assert "gpu=1" in engines["benchmark=blend-mcq, bench_engine=tiny"]
    assert "results/evaluate/blend-mcq/engines/tiny.parquet" in out
    assert any("benchmark=blend-mcq, bench_model=tiny-mine" in j for j in jobs), out[-3000:]
    # evaluation alone: only evaluate rules, the built base model and the report's summaries
    # (the demo's leftover embedder, generator and judge are not built)
    stats = out.split("Job stats:")[1].strip().split("\n\n")[0].splitlines()[2:]
    planned = {line.split()[0] for line in stats} - {"total"}
    evaluate_rules = {"blend_generate", "blend_answers", "blend_score", "lm_eval", "compare_models"}
    # the demo config's folder benchmark (blend-mcq) runs for every eval model too
    evaluate_rules |= {"benchmark_items", "benchmark_generate", "benchmark_score"}
    evaluate_rules |= {"benchmark_responses", "benchmark_compare"}
    assert planned == evaluate_rules | {
        "build_tiny_chat", "api_usage", "drops_summary", "run_summary", "all"
    }, planned  # fmt: skip
    # and `polyculture check` names none of the switched-off pipelines' keys
    check = subprocess.run(
        [str(Path(sys.executable).with_name("polyculture")), "check", "--configfile", "eval.yaml"],
        cwd=work, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OPENAI_API_KEY": "x"},
    )  # fmt: skip
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr
    said = check.stdout + check.stderr
    assert not any(k in said for k in ("consensus.", "train.", "wvs.", "translator")), said
    assert "builtin_models.corpus_path" in said  # the base model is built from it


def test_an_adapter_is_loaded_with_its_tokenizer_template_and_resized_embeddings(
    builtin_models: dict[str, Path], tmp_path: Path
) -> None:
    """Adapters trained elsewhere (issue 27, item 1): one trained with two added tokens (its
    tokenizer, chat template and whole embedding layer saved with it) loads on the hf backend
    with them, the base model resized first (PEFT alone fails on the size mismatch); one that
    ships only a chat_template.jinja gets that template over the base model's; a plain one
    changes nothing. The comparison's notes say so for the first two only."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polyculture.backends.generation.base import adapter_load_notes, adapter_provenance
    from polyculture.backends.generation.hf import HFGenerator

    base = str(builtin_models["tiny-chat"])
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    torch.manual_seed(0)

    def save(dest: Path, added: list[str] | None = None) -> Path:
        tok = AutoTokenizer.from_pretrained(base)
        lm = AutoModelForCausalLM.from_pretrained(base)
        extra: dict = {}
        if added:
            tok.add_tokens(added)
            lm.resize_token_embeddings(len(tok))
            extra = {"modules_to_save": ["embed_tokens"]}
        lora = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False, **extra)
        get_peft_model(lm, lora).save_pretrained(dest)
        if added:
            tok.chat_template = template
            tok.save_pretrained(dest)
        return dest

    resized = save(tmp_path / "resized", ["<culture>", "</culture>"])
    only_template = save(tmp_path / "template")
    (only_template / "chat_template.jinja").write_text(template, encoding="utf-8")
    plain = save(tmp_path / "plain")
    vocab = len(AutoTokenizer.from_pretrained(base))

    gen = HFGenerator(base, adapter=str(resized))
    assert len(gen.tokenizer) == vocab + 2 and gen.tokenizer.chat_template == template
    saved = load_file(resized / "adapter_model.safetensors")
    embedding = gen.lm.get_input_embeddings().weight
    assert embedding.shape[0] == vocab + 2
    assert torch.equal(embedding, saved["base_model.model.model.embed_tokens.weight"])
    assert HFGenerator(base, adapter=str(only_template)).tokenizer.chat_template == template
    plain_gen = HFGenerator(base, adapter=str(plain))
    assert plain_gen.tokenizer.chat_template != template and len(plain_gen.tokenizer) == vocab

    assert adapter_provenance(base, str(resized)) == {
        "adapter": str(resized),
        "tokenizer": "adapter",
        "chat_template": "adapter",
        "embedding_rows": vocab + 2,
    }
    notes = adapter_load_notes(
        {n: {"model": base, "adapter": str(a)} for n, a in
         (("r", resized), ("t", only_template), ("p", plain))}
    )  # fmt: skip
    assert notes == [
        f"r: adapter {resized} loaded with its own tokenizer, its own chat template, embeddings "
        f"resized to its {vocab + 2}-token vocabulary",
        f"t: adapter {only_template} loaded with its own chat template",
    ]
    # an adapter from outside the workflow is said to be, also where it brings nothing
    assert adapter_load_notes(
        {"p": {"model": base, "adapter": str(plain), "source": "directory"},
         "v": {"model": base, "adapter": str(plain), "source": "variant"}}
    ) == [
        f"p: adapter {plain} (a PEFT directory from outside this workflow) loaded with the base "
        "model's tokenizer and chat template"
    ]  # fmt: skip


def test_api_model_reaches_lm_eval_as_chat_completions_with_the_key_outside_its_args() -> None:
    from polyculture.general_eval import api_lm_eval_model, batch_size_for

    openai = {
        "endpoints": {"mine": {"base_url": "http://gpu7:8000/v1/", "api_key_env": "MY_KEY"}},
        "max_concurrency": 3,
        "cache_dir": "results/api_cache",
    }
    kind, args, env = api_lm_eval_model(
        "openai@mine:llama3:8b", openai, seed=7, environ={"MY_KEY": "sk-secret"}
    )
    assert kind == "local-chat-completions" and batch_size_for(kind, 8) == 1
    assert args["base_url"] == "http://gpu7:8000/v1/chat/completions"
    assert args["model"] == "llama3:8b" and args["num_concurrent"] == 3 and args["seed"] == 7
    assert "sk-secret" not in str(args) and env == {"OPENAI_API_KEY": "sk-secret"}
    _, args, env = api_lm_eval_model("openai@http://127.0.0.1:9/v1:tiny", {}, environ={})
    assert args["base_url"] == "http://127.0.0.1:9/v1/chat/completions" and env == {
        "OPENAI_API_KEY": "EMPTY"
    }
    with pytest.raises(ConfigError, match="MY_KEY"):
        api_lm_eval_model("openai@mine:llama3:8b", openai, environ={})
