"""Generation batching on the hf backend (CPU, the built-in tiny chat model): tokens/s of the
backend's batched path (HFGenerator with the config's batch_size 16: length-sorted, left-padded
batches) against the same generator one prompt at a time (batch_size 1), in the pipeline's two
decoding modes: sampled (temperature 0.7, top-p 0.95, per-row seeded sampler: consensus answers,
WVS survey) and greedy (BLEnD evaluation). Both paths get the same prompts (demo BLEnD
questions, statements and instructions as user turns), the same settings and seed, and the same
number of new tokens per prompt: min_new_tokens = max_new_tokens, so no row stops early; the
generated tokens are counted from the model's own outputs and compared. Best of two alternating
runs per path.

Run alone: `.venv/bin/python benchmarks/run.py bench_generation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from workspace import demo_texts, tiny_models

from polyculture.backends.generation import Sampling, load_generator
from polyculture.backends.generation.hf import HFGenerator

PROMPTS = 32
NEW_TOKENS = 48
BATCH_SIZE = 16  # config.yaml's backend.batch_size
REPEATS = 2
# the pipeline's two kinds of decoding: sampled (consensus answers, WVS survey) and greedy
# (BLEnD evaluation); the token count is forced with min_new_tokens = max_new_tokens
MODES = {
    "sampled": Sampling(
        temperature=0.7, top_p=0.95, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, seed=7
    ),
    "greedy": Sampling(temperature=0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS),
}


def prompts(count: int = PROMPTS) -> list[list[dict[str, str]]]:
    """`count` one-turn conversations from the demo texts."""
    texts = demo_texts()
    if len(texts) < count:
        raise ValueError(f"only {len(texts)} demo texts, {count} wanted")
    return [[{"role": "user", "content": t}] for t in texts[:count]]


def count_new_tokens(gen: HFGenerator) -> Callable[[], int]:
    """Wrap the generator's model.generate so that it counts the new tokens it returns (rows ×
    new positions per call); returns a function that reads and resets the count."""
    inner = gen.lm.generate
    count = [0]

    def generate(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        count[0] += out.shape[0] * (out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    gen.lm.generate = generate

    def take() -> int:
        n, count[0] = count[0], 0
        return n

    return take


def timed_generate(
    gen: HFGenerator, convs: list, batch_size: int, sampling: Sampling
) -> tuple[float, list[list[str]]]:
    """Seconds and outputs of one generate call with the given batch size."""
    gen.batch_size = batch_size
    start = time.perf_counter()
    out = gen.generate(convs, n=1, sampling=sampling)
    return time.perf_counter() - start, out


@dataclass
class Measured:
    """Best seconds and token counts of the runs of one path (batch size) in one mode."""

    seconds: float = float("inf")
    tokens: set[int] = field(default_factory=set)
    outputs: list[list[str]] = field(default_factory=list)


def measure(
    gen: HFGenerator, convs: list, sampling: Sampling, taken: Callable[[], int]
) -> tuple[Measured, Measured]:
    """One prompt at a time and batched, alternating, REPEATS times each after a warm-up."""
    warm = replace(sampling, max_new_tokens=4, min_new_tokens=4)
    timed_generate(gen, convs[:BATCH_SIZE], BATCH_SIZE, warm)
    timed_generate(gen, convs[:2], 1, warm)
    taken()
    single, batched = Measured(), Measured()
    for _ in range(REPEATS):
        for size, m in ((1, single), (BATCH_SIZE, batched)):
            seconds, m.outputs = timed_generate(gen, convs, size, sampling)
            m.seconds = min(m.seconds, seconds)
            m.tokens.add(taken())
    return single, batched


def batching_figures(
    gen: HFGenerator,
    convs: list,
    modes: dict[str, Sampling],
    shape: str,
    target: str = "",
) -> dict[str, dict]:
    """Per mode: tokens/s batched and one prompt at a time, their ratio (`target` appended to
    its text), whether every run generated exactly prompts x max_new_tokens tokens, and how
    many outputs are the same text."""
    taken = count_new_tokens(gen)
    figures: dict[str, dict] = {}
    for mode, sampling in modes.items():
        expected = len(convs) * sampling.max_new_tokens
        single, batched = measure(gen, convs, sampling, taken)
        single_tps, batched_tps = expected / single.seconds, expected / batched.seconds
        same = sum(a == b for a, b in zip(single.outputs, batched.outputs, strict=True))
        figures |= {
            f"{mode}_batched_tokens_per_s": {
                "value": round(batched_tps, 1),
                "unit": "tok/s",
                "compares": f"{mode}, batch_size {BATCH_SIZE}, {shape}",
            },
            f"{mode}_single_tokens_per_s": {
                "value": round(single_tps, 1),
                "unit": "tok/s",
                "compares": f"{mode}, batch_size 1 (one prompt at a time), {shape}",
            },
            f"{mode}_speedup": {
                "value": round(batched_tps / single_tps, 1),
                "unit": "x",
                "compares": f"{mode}: batched tok/s / one-at-a-time tok/s{target}",
            },
            f"{mode}_same_token_counts": {
                "value": single.tokens == batched.tokens == {expected},
                "unit": "",
                "compares": f"{mode}: every run generated exactly {expected} new tokens "
                f"(counted: one at a time {sorted(single.tokens)}, batched "
                f"{sorted(batched.tokens)})",
            },
            f"{mode}_same_text": {
                "value": round(same / len(convs), 3),
                "unit": "share",
                "compares": f"{mode}: outputs identical between the two paths",
            },
        }
    return figures


def run() -> dict:
    """bench_generation's figures (batching_figures) on the tiny chat model."""
    model = str(tiny_models()["tiny-chat"])
    gen = load_generator(model, backend="hf", batch_size=BATCH_SIZE, dtype="float32")
    assert isinstance(gen, HFGenerator)
    convs = prompts()
    shape = (
        f"{len(convs)} prompts x {NEW_TOKENS} new tokens, tiny-chat, hf backend, CPU, "
        f"best of {REPEATS}"
    )
    figures = batching_figures(gen, convs, MODES, shape, " (target >= 5x)")
    gen.close()
    return figures


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<24} {fig['value']!s:>10} {fig['unit']:<6} {fig['compares']}")
