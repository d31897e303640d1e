"""Consistency scoring + ground-truth selection at paper scale: 5,007 questions × 2 sides × N=10
samples × 1,024-dim random unit vectors (Qwen3-Embedding-0.6B's width), as score_consistency and
select_ground_truth run them, against a naive Python double loop over sample pairs.

Run alone: `.venv/bin/python benchmarks/bench_consistency.py` (prints and returns the figures).
"""

from __future__ import annotations

import os
import time

import numpy as np
import polars as pl

from polyculture.consensus.consistency import score_embeddings
from polyculture.consensus.ground_truth import select_ground_truth

QUESTIONS = 5007
SIDES = ("en", "local")
N = 10
DIM = 1024
SEED = 20260522


def paper_scale_embeddings(
    questions: int = QUESTIONS, n: int = N, dim: int = DIM, seed: int = SEED
) -> pl.DataFrame:
    """The embeddings table of `questions` × 2 sides × n random unit vectors of size dim."""
    rng = np.random.default_rng(seed)
    rows = questions * len(SIDES) * n
    vecs = rng.standard_normal((rows, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    qids = np.repeat([f"q{i:05d}" for i in range(questions)], len(SIDES) * n)
    sides = np.tile(np.repeat(SIDES, n), questions)
    samples = np.tile(np.arange(n), questions * len(SIDES))
    return pl.DataFrame(
        {
            "question_id": qids,
            "side": sides,
            "sample": samples,
            "embedding": pl.Series(vecs, dtype=pl.Array(pl.Float32, dim)),
        }
    )


def naive_select(emb: pl.DataFrame) -> dict[str, tuple[str, int, float, float]]:
    """Reference: a Python double loop over sample pairs per question and side, then the same
    selection rule (higher C, ties → local; g* = highest mean similarity, ties → lowest index)."""
    qids = emb["question_id"].to_numpy()
    sides = emb["side"].to_numpy()
    vecs = emb["embedding"].to_numpy()
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for q, s, v in zip(qids, sides, vecs, strict=True):
        groups.setdefault((q, s), []).append(v.astype(np.float64) / np.linalg.norm(v))
    scores: dict[tuple[str, str], tuple[float, list[float]]] = {}
    for key, vs in groups.items():
        n = len(vs)
        per = [0.0] * n
        pair_sum = 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    c = float(np.dot(vs[i], vs[j]))
                    per[i] += c
                    if i < j:
                        pair_sum += c
        scores[key] = (pair_sum * 2 / (n * (n - 1)), [p / (n - 1) for p in per])
    out = {}
    for q in sorted({q for q, _ in groups}):
        c_en, c_local = scores[(q, "en")][0], scores[(q, "local")][0]
        strong = "en" if c_en > c_local else "local"
        per = scores[(q, strong)][1]
        out[q] = (strong, int(np.argmax(per)), c_en, c_local)
    return out


def run(questions: int = QUESTIONS) -> dict:
    """Seconds of the vectorized path and of the naive loop, their ratio, and agreement."""
    emb = paper_scale_embeddings(questions)
    start = time.perf_counter()
    cons, samples, _ = score_embeddings(emb)
    selection = select_ground_truth(cons, samples, selection="consistency", seed=0)
    fast = time.perf_counter() - start

    start = time.perf_counter()
    reference = naive_select(emb)
    slow = time.perf_counter() - start

    got = {
        q: (s, g, a, b)
        for q, s, g, a, b in selection.select(
            "question_id", "strong_side", "gt_sample", "c_en", "c_local"
        ).iter_rows()
    }
    agree = all(
        got[q][:2] == ref[:2] and abs(got[q][2] - ref[2]) < 1e-6 and abs(got[q][3] - ref[3]) < 1e-6
        for q, ref in reference.items()
    )
    shape = f"{questions} questions x 2 sides x N={N} x {DIM}-dim"
    figures = {
        "vectorized_seconds": {
            "value": round(fast, 3),
            "unit": "s",
            "compares": f"score_embeddings + select_ground_truth, {shape} (target < 5 s on 2 cores)",
        },
        "naive_seconds": {
            "value": round(slow, 3),
            "unit": "s",
            "compares": f"Python double loop, {shape}",
        },
        "speedup": {
            "value": round(slow / fast, 1),
            "unit": "x",
            "compares": "naive seconds / vectorized seconds",
        },
        "agree": {
            "value": bool(agree),
            "unit": "",
            "compares": "same strong side, g* and C (1e-6) as the naive loop for every question",
        },
        "threads": {
            "value": os.environ.get("OMP_NUM_THREADS", "unset"),
            "unit": "",
            "compares": "OMP_NUM_THREADS during the run",
        },
    }
    for key, fig in figures.items():
        print(f"{key:<20} {fig['value']!s:>10} {fig['unit']:<3} {fig['compares']}")
    return figures


if __name__ == "__main__":
    run()
