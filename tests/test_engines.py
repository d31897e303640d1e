"""vLLM engine options from the config (polyculture.backends.engine): merged globally and per
model, checked against vLLM's EngineArgs names (the installed vLLM's, else the pinned list),
sized in GPUs (tensor × pipeline parallel size, on one node), and passed to the backends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from polyculture.backends.engine import (
    engine_arg_names,
    engine_gpus,
    engine_options,
    engine_problems,
    node_gpu_problems,
    pinned_engine_args,
)
from polyculture.backends.generation import generator_kwargs
from polyculture.backends.generation.hf import hf_device_map
from polyculture.backends.spec import parse_model_spec
from polyculture.config_check import config_problems

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def _config(**backend: object) -> dict:
    return {
        "backend": {"vllm_gpu_memory_utilization": 0.85, "vllm_max_model_len": 8192, **backend},
        "eval_models": [
            {"name": "big", "model": "org/big", "backend": {"vllm": {"pipeline_parallel_size": 2}}},
            {"name": "small", "model": "org/small"},
        ],
    }


def test_options_merge_legacy_global_per_spec_per_eval_model() -> None:
    config = _config(
        vllm={"max_num_seqs": 64, "max_model_len": 4096},
        models={"org/big": {"vllm": {"tensor_parallel_size": 4, "max_num_seqs": 32}}},
    )
    big, small = config["eval_models"]
    assert engine_options(config, "org/big", big) == {
        "gpu_memory_utilization": 0.85,
        "max_model_len": 4096,
        "max_num_seqs": 32,
        "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2,
    }
    assert engine_options(config, "org/small", small) == {
        "gpu_memory_utilization": 0.85,
        "max_model_len": 4096,
        "max_num_seqs": 64,
    }
    assert engine_gpus(engine_options(config, "org/big", big)) == 8
    assert engine_gpus(engine_options(config, "org/small", small)) == 1


def test_model_spec_books_tensor_times_pipeline_gpus_and_none_for_api() -> None:
    engine = {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
    assert parse_model_spec("org/big", engine=engine).gpus == 8
    assert parse_model_spec("org/big").gpus == 1
    assert parse_model_spec("openai:gpt-4.1", engine=engine).gpus == 0


def test_unknown_option_is_refused_with_the_closest_name() -> None:
    config = _config(vllm={"tensor_paralel_size": 2, "enforce_eager": True})
    config["eval_models"][1]["backend"] = {"vllm": {"max_num_seq": 8}}
    problems = [str(p) for p in engine_problems(config)]
    assert len(problems) == 2, problems
    assert "backend.vllm.tensor_paralel_size" in problems[0]
    assert "did you mean 'tensor_parallel_size'" in problems[0]
    assert "eval_models[1].backend.vllm.max_num_seq" in problems[1]
    assert "did you mean 'max_num_seqs'" in problems[1]


def test_every_problem_is_collected_by_the_config_check(tmp_path: Path) -> None:
    config = {"seed": 1, **_config(vllm={"tensor_parallel_size": 0, "kv_cahce_dtype": "fp8"})}
    keys = [p.key for p in config_problems(config, SCHEMA, workdir=tmp_path)]
    assert "backend.vllm.tensor_parallel_size" in keys, keys
    assert "backend.vllm.kv_cahce_dtype" in keys, keys


def test_model_and_dtype_are_not_engine_options_here(tmp_path: Path) -> None:
    config = {"seed": 1, **_config(vllm={"model": "x", "dtype": "half"})}
    keys = [p.key for p in config_problems(config, SCHEMA, workdir=tmp_path)]
    assert any(k.startswith("backend.vllm") for k in keys), keys


def test_parallel_size_that_does_not_divide_a_local_models_heads(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_attention_heads": 6}), encoding="utf-8")
    config = {"backend": {"models": {str(model): {"vllm": {"tensor_parallel_size": 4}}}}}
    config["eval_models"] = [{"name": "m", "model": str(model)}]
    problems = [str(p) for p in engine_problems(config)]
    assert len(problems) == 1 and "eval_models[0].model" in problems[0], problems
    assert "tensor_parallel_size 4 does not divide the 6 attention heads" in problems[0]
    config["backend"]["models"][str(model)]["vllm"]["tensor_parallel_size"] = 2
    assert list(engine_problems(config)) == []


def test_more_gpus_than_a_node_has_names_the_key_and_the_site_setting() -> None:
    config = _config(models={"org/big": {"vllm": {"tensor_parallel_size": 8}}})
    config["train"] = {"gpus": 4}
    problems = [str(p) for p in node_gpu_problems(config, 8)]
    assert len(problems) == 1 and "eval_models[0].model" in problems[0], problems
    assert "16 GPUs" in problems[0] and "gpus_per_node" in problems[0]
    assert [p.key for p in node_gpu_problems(config, 2)] == ["eval_models[0].model", "train.gpus"]


def test_generator_kwargs_pass_the_jobs_engine_options() -> None:
    kwargs = generator_kwargs({"vllm_max_model_len": 4096, "engine": {"tensor_parallel_size": 2}})
    assert kwargs["engine"] == {"tensor_parallel_size": 2}
    # without the workflow's merged `engine`: the backend section's own options
    kwargs = generator_kwargs({"vllm_max_model_len": 4096, "vllm": {"enforce_eager": True}})
    assert kwargs["engine"] == {"max_model_len": 4096, "enforce_eager": True}


def test_hf_spreads_a_model_only_over_several_booked_and_visible_gpus() -> None:
    assert hf_device_map(4, 4) == "auto"
    assert hf_device_map(1, 4) is None
    assert hf_device_map(4, 1) is None
    assert hf_device_map(4, 0) is None


def test_the_pinned_list_is_the_installed_vllms_engine_args() -> None:
    """Where vLLM is importable the check uses its EngineArgs; the list kept for machines
    without it equals that of the pinned vLLM of .venv-vllm."""
    names, source = engine_arg_names()
    assert {"tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs"} <= names
    assert "kv_cache_dtype" in names and "quantization" in names and "enforce_eager" in names
    assert "EngineArgs" in source
    if not VLLM_PYTHON.exists():
        pytest.skip("no .venv-vllm here")
    code = (
        "import dataclasses, json, vllm; from vllm.engine.arg_utils import EngineArgs; "
        "print(json.dumps([vllm.__version__, sorted(f.name for f in "
        "dataclasses.fields(EngineArgs) if not f.name.startswith('_'))]))"
    )
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    version, installed = json.loads(proc.stdout.strip().splitlines()[-1])
    header = (REPO / "src/polyculture/data/vllm_engine_args.txt").read_text(encoding="utf-8")
    assert f"# version: {version}" in header
    assert pinned_engine_args() == frozenset(installed)


@pytest.fixture(scope="module")
def tp4_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import copy_workflow

    return copy_workflow(tmp_path_factory.mktemp("tp4"))


TP4 = "configs/templates/evaluate-70b-tp4.yaml"


def test_a_70b_preset_on_4_gpus_books_them_on_the_gpu_partition(tp4_copy: Path) -> None:
    """The 70B template's generation jobs ask 4 GPUs of the GPU partition under profiles/slurm
    (a dry run, the data a placeholder)."""
    import re

    from conftest import run_snakemake

    proc = run_snakemake(
        tp4_copy, "-n", "--profile", "profiles/slurm", "--configfile", TP4, timeout=600
    )
    out = proc.stdout + proc.stderr
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    generation = [j for j in jobs if re.match(r"rule (blend_generate|lm_eval):", j)]
    assert len(generation) == 2, out[-3000:]  # one BLEnD engine (all countries), one lm-eval
    for job in generation:
        resources = re.search(r"resources: (.*)", job).group(1)
        assert "gpu=4" in resources and "slurm_partition=gpu" in resources, resources


def test_more_gpus_than_the_sites_node_has_stops_the_workflow(tp4_copy: Path) -> None:
    from conftest import run_snakemake

    site = tp4_copy / "site-2gpu.yaml"
    site.write_text("gpus_per_node: 2\n", encoding="utf-8")
    proc = run_snakemake(
        tp4_copy,
        "-n",
        "--profile",
        "profiles/slurm",
        "--configfile",
        TP4,
        check=False,
        env={"POLYCULTURE_SITE": str(site)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "eval_models[0].model" in out and "gpus_per_node" in out, out[-3000:]
