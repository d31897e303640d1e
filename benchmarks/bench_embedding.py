"""Embedding throughput on the built-in tiny embedder (CPU): sentences/s of embed_texts with the
pipeline's batch size (backend.embed_batch_size, 64) against the same function one sentence per
batch (batch_size 1), on the same sentences (the demo texts: BLEnD questions in four languages,
statements, instructions and answers, repeated to a fixed count). Best of a few repeats each;
the two paths' vectors are compared.

Run alone: `.venv/bin/python benchmarks/run.py bench_embedding`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from workspace import demo_texts, tiny_models

from polyculture.backends.embedding import embed_texts, load_embedder

SENTENCES = 256
BATCH_SIZE = 64  # the schema default of backend.embed_batch_size
REPEATS = 3


def sentences(count: int = SENTENCES) -> list[str]:
    """`count` sentences: the distinct demo texts, cycled."""
    texts = demo_texts()
    return [texts[i % len(texts)] for i in range(count)]


def best_seconds(fn: Callable[[], np.ndarray], repeats: int = REPEATS) -> tuple[float, np.ndarray]:
    """Fewest seconds of `repeats` calls of fn, and its (last) result."""
    best = float("inf")
    out = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run() -> dict:
    """Sentences/s batched and one at a time, their ratio and the largest vector difference."""
    embedder = load_embedder(str(tiny_models()["tiny-embed"]), device="cpu")
    texts = sentences()
    embed_texts(embedder, texts[:BATCH_SIZE], batch_size=BATCH_SIZE)  # warm-up, not timed
    batched_s, batched = best_seconds(lambda: embed_texts(embedder, texts, batch_size=BATCH_SIZE))
    single_s, single = best_seconds(lambda: embed_texts(embedder, texts, batch_size=1))
    shape = f"{len(texts)} sentences, tiny-embed, CPU, best of {REPEATS}"
    return {
        "batched_sentences_per_s": {
            "value": round(len(texts) / batched_s, 1),
            "unit": "sent/s",
            "compares": f"embed_texts batch_size {BATCH_SIZE}, {shape}",
        },
        "single_sentences_per_s": {
            "value": round(len(texts) / single_s, 1),
            "unit": "sent/s",
            "compares": f"embed_texts batch_size 1 (one at a time), {shape}",
        },
        "speedup": {
            "value": round(single_s / batched_s, 1),
            "unit": "x",
            "compares": "batched sentences/s / one-at-a-time sentences/s",
        },
        "max_abs_diff": {
            "value": float(np.abs(batched - single).max()),
            "unit": "",
            "compares": "largest difference between the two paths' unit vectors (padding only)",
        },
    }


if __name__ == "__main__":
    for key, fig in run().items():
        print(f"{key:<26} {fig['value']!s:>10} {fig['unit']:<6} {fig['compares']}")
