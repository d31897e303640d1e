"""Ground-truth selection (paper §3.2): stronger language and its most central answer g*.

`selection: consistency` (the method): the side with the higher consistency C is the stronger
side λ+; g* is its sample with the highest mean cosine to its peers.

Tie rules (deterministic, tested):
- equal C on both sides (exact float64 equality: in practice both sides identical answers,
  C = 1) → the *local* side is the stronger one. The method rests on the hypothesis that the
  model's cultural knowledge lives in the local-language representation (the question's
  country of origin speaks it), and with no evidence either way we follow that prior; it also
  makes English — the side the paper's headline result improves — the side that receives the
  transferred answer.
- equal mean similarity among the stronger side's samples → the lowest sample index.

`selection: random` (the ablation): a fair coin picks the "stronger" side and a uniform draw
picks g* among that side's usable samples; both draws come from a generator seeded with
(seed, crc32(question_id)), so a question's choice does not depend on the other questions.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.io import read_table

SELECTIONS = ("consistency", "random")
TIE_SIDE = "local"

SELECTION_SCHEMA = {
    "question_id": pl.String,
    "selection": pl.String,
    "c_en": pl.Float64,
    "c_local": pl.Float64,
    "strong_side": pl.String,
    "weak_side": pl.String,
    "gt_sample": pl.Int64,
}


def question_rng(seed: int, question_id: str, stream: int = 0) -> np.random.Generator:
    """A random generator for one question, from the run seed, the question id and a stream."""
    return np.random.default_rng([int(seed), zlib.crc32(question_id.encode("utf-8")), stream])


def stronger_side(c_en: float, c_local: float) -> str:
    """'en' when English is strictly more consistent, else 'local' (ties go to local)."""
    return "en" if c_en > c_local else "local"


def other_side(side: str) -> str:
    """The opposite side."""
    return "local" if side == "en" else "en"


def _wide_consistency(consistency: pl.DataFrame) -> pl.DataFrame:
    wide = consistency.pivot(on="side", index="question_id", values="consistency")
    missing = [s for s in ("en", "local") if s not in wide.columns]
    if missing:
        raise InputError("consistency", f"no rows for side(s) {missing}")
    incomplete = wide.filter(pl.col("en").is_null() | pl.col("local").is_null())
    if incomplete.height:
        raise InputError(
            "consistency",
            f"question {incomplete['question_id'][0]!r} lacks a consistency for one side",
        )
    return wide.rename({"en": "c_en", "local": "c_local"}).sort("question_id")


def select_by_consistency(consistency: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """Stronger side by C (ties → local) and g* = its most central sample (ties → lowest index)."""
    wide = _wide_consistency(consistency).with_columns(
        pl.when(pl.col("c_en") > pl.col("c_local"))
        .then(pl.lit("en"))
        .otherwise(pl.lit("local"))
        .alias("strong_side")
    )
    best = (
        samples.join(wide.select("question_id", "strong_side"), on="question_id")
        .filter(pl.col("side") == pl.col("strong_side"))
        .sort(["question_id", "mean_similarity", "sample"], descending=[False, True, False])
        .group_by("question_id", maintain_order=True)
        .first()
        .select("question_id", pl.col("sample").alias("gt_sample"))
    )
    out = wide.join(best, on="question_id", how="left")
    if out["gt_sample"].null_count():
        q = out.filter(pl.col("gt_sample").is_null())["question_id"][0]
        raise InputError("sample similarity", f"question {q!r} has no sample on its stronger side")
    return out.with_columns(
        pl.lit("consistency").alias("selection"),
        pl.when(pl.col("strong_side") == "en")
        .then(pl.lit("local"))
        .otherwise(pl.lit("en"))
        .alias("weak_side"),
    ).select(list(SELECTION_SCHEMA))


def select_randomly(consistency: pl.DataFrame, samples: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Ablation: a seeded coin for the side and a seeded uniform draw of g* within it."""
    wide = _wide_consistency(consistency)
    usable = {
        (q, s): sorted(v)
        for q, s, v in samples.group_by("question_id", "side").agg(pl.col("sample")).iter_rows()
    }
    strong, gt = [], []
    for q in wide["question_id"].to_list():
        rng = question_rng(seed, q)
        side = ("en", "local")[int(rng.integers(2))]
        choices = usable.get((q, side), [])
        if not choices:
            raise InputError("sample similarity", f"question {q!r} has no sample on side {side!r}")
        strong.append(side)
        gt.append(int(choices[int(rng.integers(len(choices)))]))
    return wide.with_columns(
        pl.Series("strong_side", strong, dtype=pl.String),
        pl.Series("weak_side", [other_side(s) for s in strong], dtype=pl.String),
        pl.Series("gt_sample", gt, dtype=pl.Int64),
        pl.lit("random").alias("selection"),
    ).select(list(SELECTION_SCHEMA))


def select_ground_truth(
    consistency: pl.DataFrame, samples: pl.DataFrame, *, selection: str, seed: int
) -> pl.DataFrame:
    """Selection table (question_id, selection, c_en, c_local, strong_side, weak_side,
    gt_sample) for selection mode 'consistency' or 'random'; no questions give an empty table."""
    if selection not in SELECTIONS:
        raise ConfigError(
            "consensus.variants.*.selection",
            f"unknown selection {selection!r}; expected {SELECTIONS}",
        )
    if consistency.height == 0:
        return pl.DataFrame(schema=SELECTION_SCHEMA)
    if selection == "consistency":
        return select_by_consistency(consistency, samples)
    if selection == "random":
        return select_randomly(consistency, samples, seed)
    raise ConfigError(
        "consensus.variants.*.selection", f"unknown selection {selection!r}; expected {SELECTIONS}"
    )


def selected_responses(
    selection: pl.DataFrame, paths: Sequence[str | os.PathLike[str]]
) -> pl.DataFrame:
    """The responses (question_id, side, sample, text) of the selected samples g*, read one
    shard at a time, so that only one shard's texts and the selected ones are in memory: what
    `attach_texts` uses of the responses, in the order of the shards."""
    wanted = selection.select(
        "question_id", pl.col("strong_side").alias("side"), pl.col("gt_sample").alias("sample")
    )
    parts = []
    for path in paths:
        shard = read_table(path, allow_empty=True)
        if shard.height:
            parts.append(
                shard.select("question_id", "side", "sample", "text").join(
                    wanted, on=["question_id", "side", "sample"], how="semi", maintain_order="left"
                )
            )
    if not parts:
        return pl.DataFrame(
            schema={
                "question_id": pl.String,
                "side": pl.String,
                "sample": pl.Int64,
                "text": pl.String,
            }
        )
    return pl.concat(parts, how="vertical_relaxed")


def attach_texts(
    selection: pl.DataFrame, pairs: pl.DataFrame, responses: pl.DataFrame
) -> pl.DataFrame:
    """Add the question's country and languages, the weak-side question and g*'s text.

    Adds: country, language (local), strong_language, weak_language, question_weak, gt_text.
    """
    out = selection.join(
        pairs.select("question_id", "country", "language", "question_en", "question_local"),
        on="question_id",
        how="left",
    )
    if out["country"].null_count():
        q = out.filter(pl.col("country").is_null())["question_id"][0]
        raise InputError("question pairs", f"question {q!r} is not in the question pairs")
    gt = responses.select(
        "question_id",
        pl.col("side").alias("strong_side"),
        pl.col("sample").alias("gt_sample"),
        pl.col("text").alias("gt_text"),
    )
    out = out.join(gt, on=["question_id", "strong_side", "gt_sample"], how="left")
    if out["gt_text"].null_count():
        q = out.filter(pl.col("gt_text").is_null())["question_id"][0]
        raise InputError("responses", f"question {q!r}: the selected sample has no response text")
    return out.with_columns(
        pl.when(pl.col("strong_side") == "en")
        .then(pl.lit("en"))
        .otherwise(pl.col("language"))
        .alias("strong_language"),
        pl.when(pl.col("weak_side") == "en")
        .then(pl.lit("en"))
        .otherwise(pl.col("language"))
        .alias("weak_language"),
        pl.when(pl.col("weak_side") == "en")
        .then(pl.col("question_en"))
        .otherwise(pl.col("question_local"))
        .alias("question_weak"),
    ).drop("question_en", "question_local")
