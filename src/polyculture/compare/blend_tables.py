"""BLEnD comparisons: per-question scores, SEM-B / SEM-W per country, language and prompt with
the All and All (pooled) summaries, and adapter-minus-base differences with a paired bootstrap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from polyculture.compare.pairs import (
    ALL,
    ALL_COUNTRIES,
    ALL_POOLED_COUNTRIES,
    Pair,
    _aligned,
    stratified_paired_bootstrap,
)
from polyculture.errors import InputError
from polyculture.stats import paired_bootstrap

BLEND_SCORE_SCHEMA = {
    "model": pl.String,
    "country": pl.String,
    "language": pl.String,
    "language_kind": pl.String,
    "prompt_id": pl.String,
    "sem_b": pl.Float64,
    "sem_w": pl.Float64,
    "n_valid": pl.Int64,
}


BLEND_COMPARISON_SCHEMA = {
    "model": pl.String,
    "base": pl.String,
    "variant": pl.String,
    "country": pl.String,
    "language": pl.String,
    "language_kind": pl.String,
    "prompt_id": pl.String,
    "n_valid": pl.Int64,
    "sem_b_base": pl.Float64,
    "sem_b": pl.Float64,
    "delta_sem_b": pl.Float64,
    "ci_low_sem_b": pl.Float64,
    "ci_high_sem_b": pl.Float64,
    "p_sem_b": pl.Float64,
    "significant_sem_b": pl.Boolean,
    "sem_w_base": pl.Float64,
    "sem_w": pl.Float64,
    "delta_sem_w": pl.Float64,
    "p_sem_w": pl.Float64,
    "significant_sem_w": pl.Boolean,
}


def blend_question_scores(per_question: pl.DataFrame) -> pl.DataFrame:
    """Per valid question: match and weight per prompt template, and their mean over the
    templates (prompt_id 'all'). Needs the per-question table with a `model` column."""
    need = {"model", "ID", "country", "language", "prompt_id", "valid", "match", "weight"}
    missing = sorted(need - set(per_question.columns))
    if missing:
        raise InputError("per-question table", f"missing column(s) {', '.join(missing)}")
    valid = per_question.filter(pl.col("valid")).select(
        "model",
        "country",
        "language",
        "prompt_id",
        "ID",
        pl.col("match").cast(pl.Float64),
        pl.col("weight").cast(pl.Float64),
    )
    keys = ["model", "country", "language", "ID"]
    n_prompts = valid.group_by(["model", "country", "language"]).agg(
        n=pl.col("prompt_id").n_unique()
    )
    per_id = valid.group_by(keys).agg(
        pl.len().alias("k"), pl.col("match").mean(), pl.col("weight").mean()
    )
    incomplete = per_id.join(n_prompts, on=["model", "country", "language"]).filter(
        pl.col("k") != pl.col("n")
    )
    if incomplete.height:
        r = incomplete.row(0, named=True)
        raise InputError(
            "per-question table",
            f"question {r['ID']} ({r['model']}, {r['country']}, {r['language']}) is scored under "
            f"{r['k']} of {r['n']} prompt templates",
        )
    pooled = per_id.select(*keys, pl.lit(ALL).alias("prompt_id"), "match", "weight")
    out = pl.concat([valid.select(pooled.columns), pooled])
    return out.with_columns(
        language_kind=pl.when(pl.col("language") == "en")
        .then(pl.lit("English"))
        .otherwise(pl.lit("local"))
    ).sort(["model", "country", "language", "prompt_id", "ID"])


def _with_all_countries(q: pl.DataFrame) -> pl.DataFrame:
    """Add the summary rows of every language kind: country 'All (pooled)' holds every
    country's questions (ID prefixed with the country) and country 'All' the same questions
    for the macro mean (the country stays in column `stratum`)."""
    q = q.with_columns(stratum=pl.col("country"))
    summary = q.with_columns(
        ID=pl.col("country") + "/" + pl.col("ID"),
        language=pl.when(pl.col("language_kind") == "English")
        .then(pl.lit("en"))
        .otherwise(pl.lit("local")),
    )
    return pl.concat(
        [
            q,
            summary.with_columns(country=pl.lit(ALL_COUNTRIES)),
            summary.with_columns(country=pl.lit(ALL_POOLED_COUNTRIES)),
        ]
    )


def blend_scores(question_scores: pl.DataFrame) -> pl.DataFrame:
    """SEM-B / SEM-W per model, country, language and prompt (templates and 'all'), with the
    summary rows: 'All' = mean of the per-country scores, 'All (pooled)' = questions pooled."""
    q = _with_all_countries(question_scores)
    keys = ["model", "country", "language", "language_kind", "prompt_id"]
    # sorted: the sums and means over the strata below add in one order (a group_by's output
    # order varies from run to run, and with it the last bit of a float sum)
    per_stratum = (
        q.group_by([*keys, "stratum"])
        .agg(
            sem_b=100 * pl.col("match").mean(),
            sem_w=100 * pl.col("weight").mean(),
            n_valid=pl.len().cast(pl.Int64),
            n_pooled_b=pl.col("match").sum(),
            n_pooled_w=pl.col("weight").sum(),
        )
        .sort([*keys, "stratum"])
    )
    pooled = pl.col("country") == ALL_POOLED_COUNTRIES
    macro_rows = (
        per_stratum.filter(~pooled)
        .group_by(keys, maintain_order=True)
        .agg(pl.col("sem_b").mean(), pl.col("sem_w").mean(), pl.col("n_valid").sum())
    )
    pooled_rows = (
        per_stratum.filter(pooled)
        .group_by(keys, maintain_order=True)
        .agg(
            sem_b=100 * pl.col("n_pooled_b").sum() / pl.col("n_valid").sum(),
            sem_w=100 * pl.col("n_pooled_w").sum() / pl.col("n_valid").sum(),
            n_valid=pl.col("n_valid").sum(),
        )
    )
    return (
        pl.concat(
            [
                macro_rows.select(list(BLEND_SCORE_SCHEMA)),
                pooled_rows.select(list(BLEND_SCORE_SCHEMA)),
            ]
        )
        .cast(BLEND_SCORE_SCHEMA)
        .sort(["country", "language", "prompt_id", "model"])
    )


def _pooled(j: pl.DataFrame, column: str) -> float:
    """100 × the mean of `column` over every row."""
    return 100 * float(j[column].mean())


def _macro(j: pl.DataFrame, column: str) -> float:
    """100 × the mean over strata of the mean of `column` within the stratum."""
    return 100 * float(j.group_by("stratum").agg(pl.col(column).mean())[column].mean())


def compare_blend(
    question_scores: pl.DataFrame, pairs: Sequence[Pair], *, n_boot: int, seed: int, alpha: float
) -> pl.DataFrame:
    """Adapter vs base per country × language × prompt and in the summary rows: ΔSEM-B and
    ΔSEM-W with paired bootstrap p-values over questions ('All': macro mean over countries,
    resampled within each country; 'All (pooled)': pooled questions)."""
    q = _with_all_countries(question_scores)
    rows = []
    groups = ["country", "language", "language_kind", "prompt_id"]
    for pair in pairs:
        mine = q.filter(pl.col("model") == pair.model)
        base = q.filter(pl.col("model") == pair.base)
        if mine.height == 0 or base.height == 0:
            missing = pair.model if mine.height == 0 else pair.base
            raise InputError("BLEnD scores", f"no scores of model {missing}")
        for key, part in sorted(mine.group_by(groups), key=lambda kv: kv[0]):
            country, language, kind, prompt_id = key
            other = base.filter(
                (pl.col("country") == country)
                & (pl.col("language") == language)
                & (pl.col("prompt_id") == prompt_id)
            )
            what = f"BLEnD {pair.model} vs {pair.base}, {country}/{language}/{prompt_id}"
            j = _aligned(
                part.select("ID", "stratum", "match", "weight"),
                other.select("ID", "stratum", "match", "weight"),
                "ID",
                what,
            )
            if country == ALL_COUNTRIES:
                strata = j["stratum"].to_list()
                b, w = (
                    stratified_paired_bootstrap(
                        j[c].to_numpy(), j[f"{c}_base"].to_numpy(), strata, n_boot, seed, alpha
                    )
                    for c in ("match", "weight")
                )
                score = _macro
            else:
                b, w = (
                    paired_bootstrap(
                        j[c].to_numpy(), j[f"{c}_base"].to_numpy(), n_boot, seed, alpha
                    )
                    for c in ("match", "weight")
                )
                score = _pooled
            rows.append(
                {
                    "model": pair.model,
                    "base": pair.base,
                    "variant": pair.variant,
                    "country": country,
                    "language": language,
                    "language_kind": kind,
                    "prompt_id": prompt_id,
                    "n_valid": j.height,
                    "sem_b_base": score(j, "match_base"),
                    "sem_b": score(j, "match"),
                    "delta_sem_b": 100 * b.delta,
                    "ci_low_sem_b": 100 * b.low,
                    "ci_high_sem_b": 100 * b.high,
                    "p_sem_b": b.p_value,
                    "significant_sem_b": b.p_value < alpha,
                    "sem_w_base": score(j, "weight_base"),
                    "sem_w": score(j, "weight"),
                    "delta_sem_w": 100 * w.delta,
                    "p_sem_w": w.p_value,
                    "significant_sem_w": w.p_value < alpha,
                }
            )
    return pl.DataFrame(rows, schema=BLEND_COMPARISON_SCHEMA)


def compared_items(items: pl.DataFrame, metrics: Mapping[str, str]) -> pl.DataFrame:
    """The per-item scores of each task's compared metric, with a unit key per item."""
    chosen = pl.DataFrame({"task": list(metrics), "metric": list(metrics.values())})
    if "cultural_label" not in items.columns:
        items = items.with_columns(cultural_label=pl.lit(None, dtype=pl.String))
    return items.join(chosen, on=["task", "metric"], how="inner").with_columns(
        unit=pl.col("subtask") + "/" + pl.col("doc_id").cast(pl.String)
    )
