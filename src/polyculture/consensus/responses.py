"""N sampled answers per question and side (paper eq. 2), and their embeddings.

A shard of question pairs becomes one generation call: the English questions followed by the
local-language questions, n samples each. Blank samples are kept in the responses table (so
that it records what M said) and removed before embedding, counted as 'empty_sample'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import InputError

RESPONSE_SCHEMA = {
    "question_id": pl.String,
    "side": pl.String,
    "language": pl.String,
    "sample": pl.Int64,
    "text": pl.String,
}


def response_conversations(pairs: pl.DataFrame) -> list[list[dict[str, str]]]:
    """User turns: every English question, then every local-language question (same order)."""
    en = [[{"role": "user", "content": q}] for q in pairs["question_en"].to_list()]
    local = [[{"role": "user", "content": q}] for q in pairs["question_local"].to_list()]
    return en + local


def collect_responses(
    pairs: pl.DataFrame, outputs: Sequence[Sequence[str]], n: int
) -> pl.DataFrame:
    """Long table (question_id, side, language, sample, text) from the outputs of
    `response_conversations(pairs)`; each prompt must have exactly n samples."""
    q = pairs.height
    if len(outputs) != 2 * q:
        raise InputError("generator", f"returned {len(outputs)} outputs for {2 * q} prompts")
    rows = []
    ids = pairs["question_id"].to_list()
    langs = pairs["language"].to_list()
    for k, samples in enumerate(outputs):
        if len(samples) != n:
            raise InputError("generator", f"prompt {k} has {len(samples)} samples, expected {n}")
        i, side = (k, "en") if k < q else (k - q, "local")
        lang = "en" if side == "en" else langs[i]
        for s, text in enumerate(samples):
            rows.append(
                {"question_id": ids[i], "side": side, "language": lang, "sample": s, "text": text}
            )
    return pl.DataFrame(rows, schema=RESPONSE_SCHEMA)


def usable_responses(responses: pl.DataFrame) -> tuple[pl.DataFrame, DropCounter]:
    """Responses with non-blank text; blank ones are dropped and counted as 'empty_sample'."""
    drops = DropCounter(stage="embed_responses")
    drops.seen(responses.height)
    blank = responses["text"].fill_null("").str.strip_chars() == ""
    n_blank = int(blank.sum())
    if n_blank:
        drops.drop("empty_sample", n_blank)
    return responses.filter(~blank), drops


def embedding_table(
    responses: pl.DataFrame,
    embed: Callable[[list[str]], np.ndarray],
) -> pl.DataFrame:
    """(question_id, side, sample, embedding) for usable responses; `embed` maps texts to a
    float matrix [len(texts), D]."""
    texts = responses["text"].to_list()
    if texts:
        vectors = np.asarray(embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise InputError("embedder", f"returned shape {vectors.shape} for {len(texts)} texts")
        dim = vectors.shape[1]
    else:
        vectors, dim = np.zeros((0, 1), dtype=np.float32), 1
    return responses.select("question_id", "side", "sample").with_columns(
        pl.Series("embedding", vectors, dtype=pl.Array(pl.Float32, dim))
    )
