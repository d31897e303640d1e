"""Bounded memory of score_consistency and select_ground_truth at 100,000 questions.

Synthetic inputs in the on-disk format the rules read, written shard by shard (never all in
memory): configs/paper-consensus.yaml's 16 shards (consensus.shards) of
`embeddings/shard-K.parquet` — 100,000 questions × 2 sides × N=10 samples × 1,024-dim float32
random unit vectors (Qwen3-Embedding-0.6B's width; 8.2 GB of vectors), rows in the order
embed_responses writes them (per shard every English run, then every local run), written by the
rules' own writer (polyculture.io.write_table) — plus `responses/shard-K.parquet` with a
600-character text per sample (our choice: a few sentences, below the preset's 512-token cap)
and `question_pairs.parquet`.

Each stage runs in a process of its own, as its rule's script does, and reports its wall time
and peak resident memory (getrusage ru_maxrss: the interpreter and its imports included):

- score: polyculture.consensus.consistency.score_embedding_files over the 16 shards, writing the
  consistency and sample-similarity tables (the rule score_consistency);
- select: select_ground_truth (consistency selection), selected_responses over the response
  shards and attach_texts (the rule select_ground_truth).

Today's in-memory path (before the shards were streamed: read_tables of every shard, then
score_embeddings; attach_texts on all responses) would hold 8.2 GB of vectors at least twice at
100,000 questions, more than this 24 GB machine shared by other jobs can spare, so it is
measured at 5,000 and 10,000 questions only, next to the streamed path at the same sizes, with
a check that both write identical tables; its 100,000-question peak is a linear extrapolation
of those two points and says so.

Run alone: `.venv/bin/python benchmarks/run.py bench_consistency_memory` (a few minutes and
~9 GB of scratch disk at 100,000 questions; POLYCULTURE_BENCH_MEMORY_QUESTIONS sets another
size).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

QUESTIONS = int(os.environ.get("POLYCULTURE_BENCH_MEMORY_QUESTIONS", "100000"))
SMALL = (5000, 10000)  # sizes at which today's in-memory path is measured
SHARDS = 16  # configs/paper-consensus.yaml consensus.shards
N = 10  # configs/paper-consensus.yaml consensus.samples
DIM = 1024  # Qwen3-Embedding-0.6B
TEXT_CHARS = 600
GOAL_GB = 4.0
SEED = 20261207
REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / "schemas" / "tables"
GB = 1e9


def qid(i: int) -> str:
    """The id of synthetic question i."""
    return f"q{i:06d}"


def shard_frames(
    questions: int, shard: int, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The embeddings and responses of one shard, rows in collect_responses order."""
    from polyculture.io import shard_bounds

    start, stop = shard_bounds(questions, shard, SHARDS)
    ids = [qid(i) for i in range(start, stop)]
    q = len(ids)
    keys = pl.DataFrame(
        {
            "question_id": np.tile(np.repeat(ids, N), 2),
            "side": np.repeat(["en", "local"], q * N),
            "sample": np.tile(np.arange(N, dtype=np.int64), 2 * q),
        }
    )
    vectors = rng.standard_normal((keys.height, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embeddings = keys.with_columns(pl.Series("embedding", vectors, dtype=pl.Array(pl.Float32, DIM)))
    del vectors
    filler = "x" * TEXT_CHARS
    responses = keys.select(
        "question_id",
        "side",
        pl.when(pl.col("side") == "en")
        .then(pl.lit("en"))
        .otherwise(pl.lit("el"))
        .alias("language"),
        "sample",
        pl.format("answer {} to {} ({}) ", "sample", "question_id", "side")
        .add(pl.lit(filler))
        .str.slice(0, TEXT_CHARS)
        .alias("text"),
    )
    return embeddings, responses


def generate(root: Path, questions: int) -> dict[str, Any]:
    """Write the shards and the question pairs under root, one shard in memory at a time."""
    from polyculture.io import write_table

    for sub in ("embeddings", "responses"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [qid(i) for i in range(questions)]
    pairs = pl.DataFrame(
        {
            "question_id": ids,
            "statement_id": [f"s{i:06d}" for i in range(questions)],
            "country": ["Greece"] * questions,
            "language": ["el"] * questions,
            "question_en": [f"Question {i}?" for i in range(questions)],
            "question_local": [f"Ερώτηση {i};" for i in range(questions)],
        }
    )
    write_table(
        pairs, root / "question_pairs.parquet", TABLES / "consensus_question_pairs.schema.yaml"
    )
    for k in range(SHARDS):
        embeddings, responses = shard_frames(questions, k, np.random.default_rng([SEED, k]))
        write_table(
            embeddings,
            root / "embeddings" / f"shard-{k}.parquet",
            TABLES / "consensus_embeddings.schema.yaml",
        )
        write_table(
            responses,
            root / "responses" / f"shard-{k}.parquet",
            TABLES / "consensus_responses.schema.yaml",
        )
    size = sum(p.stat().st_size for p in (root / "embeddings").iterdir())
    return {"embeddings_bytes": size}


def shards(root: Path, sub: str) -> list[str]:
    """The shard paths of a table, in shard order."""
    return [str(root / sub / f"shard-{k}.parquet") for k in range(SHARDS)]


def score(root: Path, mode: str) -> dict[str, Any]:
    """The rule score_consistency: streamed (today's rule) or in memory (before)."""
    from polyculture.consensus.consistency import score_embedding_files, score_embeddings
    from polyculture.consensus.tables import read_tables
    from polyculture.io import write_outputs

    paths = shards(root, "embeddings")
    if mode == "stream":
        consistency, samples, drops = score_embedding_files(paths)
    else:
        consistency, samples, drops = score_embeddings(read_tables(paths, None))
    out_dir = root / mode
    out_dir.mkdir(exist_ok=True)
    with write_outputs() as out:
        out.drops([drops], out_dir / "drops.parquet", None)
        out.table(
            consistency,
            out_dir / "consistency.parquet",
            TABLES / "consensus_consistency.schema.yaml",
        )
        out.table(
            samples,
            out_dir / "sample_similarity.parquet",
            TABLES / "consensus_sample_similarity.schema.yaml",
        )
    return {"questions": consistency["question_id"].n_unique()}


def select(root: Path, mode: str) -> dict[str, Any]:
    """The rule select_ground_truth (consistency selection): responses read per shard
    (streamed) or all at once (before)."""
    from polyculture.consensus.ground_truth import (
        attach_texts,
        select_ground_truth,
        selected_responses,
    )
    from polyculture.consensus.tables import read_tables, write_table
    from polyculture.io import read_table

    out_dir = root / mode
    selection = select_ground_truth(
        read_table(out_dir / "consistency.parquet"),
        read_table(out_dir / "sample_similarity.parquet"),
        selection="consistency",
        seed=0,
    )
    paths = shards(root, "responses")
    responses = (
        selected_responses(selection, paths) if mode == "stream" else read_tables(paths, None)
    )
    table = attach_texts(selection, read_table(root / "question_pairs.parquet"), responses)
    write_table(
        table, out_dir / "ground_truth.parquet", TABLES / "consensus_ground_truth.schema.yaml"
    )
    return {"questions": table.height}


STEPS = {"generate": generate, "score": score, "select": select}


def child(step: str, root: Path, arg: str) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its result with wall seconds and peak RSS."""
    out = root / f"{step}-{arg}.json"
    cmd = [sys.executable, __file__, step, str(root), arg, str(out)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(cmd, check=True, env=env, timeout=3600)
    return json.loads(out.read_text(encoding="utf-8"))


def same_tables(root: Path) -> bool:
    """Whether the streamed and the in-memory path wrote identical tables."""
    names = (
        "consistency.parquet",
        "sample_similarity.parquet",
        "drops.parquet",
        "ground_truth.parquet",
    )
    return all(
        pl.read_parquet(root / "stream" / n).equals(pl.read_parquet(root / "memory" / n))
        for n in names
    )


def fig(value: Any, unit: str, compares: str) -> dict[str, Any]:
    """One figure."""
    return {"value": value, "unit": unit, "compares": compares}


def run() -> dict:
    """Peak RSS and seconds of the streamed stages at QUESTIONS questions; today's in-memory
    path at SMALL sizes, its identity with the streamed path, and its extrapolated peak."""
    from workspace import scratch_dir

    base = scratch_dir("consistency-memory")
    shape = f"x 2 sides x N={N} x {DIM}-dim float32, {SHARDS} shards"
    figures: dict[str, dict[str, Any]] = {}
    memory_peaks = []
    for questions in SMALL:
        root = base / f"q{questions}"
        child("generate", root, str(questions))
        for mode in ("memory", "stream"):
            s = child("score", root, mode)
            g = child("select", root, mode)
            if mode == "memory":
                memory_peaks.append(s["peak_rss_bytes"])
            figures[f"{mode}_score_peak_rss_gb_{questions}"] = fig(
                round(s["peak_rss_bytes"] / GB, 2),
                "GB",
                f"score_consistency peak RSS, {'streamed' if mode == 'stream' else 'in memory (before)'}, "
                f"{questions} questions {shape}; {s['seconds']:.1f} s",
            )
            figures[f"{mode}_select_peak_rss_gb_{questions}"] = fig(
                round(g["peak_rss_bytes"] / GB, 2),
                "GB",
                f"select_ground_truth peak RSS, {'responses per shard' if mode == 'stream' else 'all responses (before)'}, "
                f"{questions} questions; {g['seconds']:.1f} s",
            )
        figures[f"identical_{questions}"] = fig(
            same_tables(root),
            "",
            f"streamed and in-memory paths write identical consistency, sample-similarity, drops "
            f"and ground-truth tables ({questions} questions)",
        )
        shutil.rmtree(root)
    (q0, q1), (m0, m1) = SMALL, memory_peaks
    slope = (m1 - m0) / (q1 - q0)
    figures["memory_score_peak_rss_gb_extrapolated"] = fig(
        round((m1 + slope * (QUESTIONS - q1)) / GB, 1),
        "GB",
        f"in-memory score_consistency (before) at {QUESTIONS} questions: linear extrapolation "
        f"of its measured peaks at {q0} and {q1} questions (not run: too large for this machine)",
    )

    root = base / f"q{QUESTIONS}"
    gen = child("generate", root, str(QUESTIONS))
    s = child("score", root, "stream")
    g = child("select", root, "stream")
    figures |= {
        "input_gb": fig(
            round(gen["embeddings_bytes"] / GB, 2),
            "GB",
            f"embedding shards on disk, {QUESTIONS} questions {shape} (written in {gen['seconds']:.0f} s, one shard in memory at a time)",
        ),
        "score_peak_rss_gb": fig(
            round(s["peak_rss_bytes"] / GB, 2),
            "GB",
            f"score_consistency (score_embedding_files) peak RSS at {QUESTIONS} questions {shape} (goal <= {GOAL_GB})",
        ),
        "score_seconds": fig(
            round(s["seconds"], 1),
            "s",
            f"score_consistency wall time at {QUESTIONS} questions, one process",
        ),
        "select_peak_rss_gb": fig(
            round(g["peak_rss_bytes"] / GB, 2),
            "GB",
            f"select_ground_truth (consistency) peak RSS at {QUESTIONS} questions, {TEXT_CHARS}-char responses (goal <= {GOAL_GB})",
        ),
        "select_seconds": fig(
            round(g["seconds"], 1), "s", f"select_ground_truth wall time at {QUESTIONS} questions"
        ),
        "goal_met": fig(
            max(s["peak_rss_bytes"], g["peak_rss_bytes"]) <= GOAL_GB * GB,
            "",
            f"both stages' peak RSS <= {GOAL_GB} GB at {QUESTIONS} questions",
        ),
        "load_1min": fig(
            round(os.getloadavg()[0], 2),
            "",
            "1-minute load average after the run (2 cores; other work shares them)",
        ),
    }
    shutil.rmtree(root)
    for key, f in figures.items():
        print(f"{key:<40} {f['value']!s:>8} {f['unit']:<3} {f['compares']}")
    return figures


def main(argv: list[str]) -> None:
    """`STEP ROOT ARG OUT`: run one step and write its result, seconds and peak RSS to OUT."""
    step, root, arg, out = argv
    start = time.perf_counter()
    result = STEPS[step](Path(root), int(arg) if step == "generate" else arg)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1:])
    else:
        run()
