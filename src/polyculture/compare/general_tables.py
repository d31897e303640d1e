"""General-benchmark comparisons: scores per task and benchmark (macro mean and pooled) and
adapter-minus-base differences with a paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from polyculture.compare.pairs import ALL, ALL_POOLED, Pair, _aligned, stratified_paired_bootstrap
from polyculture.errors import InputError
from polyculture.stats import paired_bootstrap

GENERAL_SCORE_SCHEMA = {
    "model": pl.String,
    "benchmark": pl.String,
    "task": pl.String,
    "language": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "n": pl.Int64,
}


GENERAL_COMPARISON_SCHEMA = {
    "model": pl.String,
    "base": pl.String,
    "variant": pl.String,
    "benchmark": pl.String,
    "task": pl.String,
    "language": pl.String,
    "metric": pl.String,
    "n": pl.Int64,
    "value_base": pl.Float64,
    "value": pl.Float64,
    "delta": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "significant": pl.Boolean,
}


def is_summary_task(task: str) -> bool:
    """Whether a general-benchmark task name is a per-benchmark summary row ('all', 'all (pooled)',
    'all (CS)', ...)."""
    return task == ALL or task.startswith(ALL + " (")


def label_task(label: str) -> str:
    """Task name of a benchmark's macro mean over the items with one cultural label."""
    return f"{ALL} ({label})"


def general_scores(items: pl.DataFrame) -> pl.DataFrame:
    """Compared metric per model and task, and per benchmark over all its tasks: task 'all' =
    the macro mean of the per-task values (the headline), 'all (pooled)' = items pooled."""
    per_task = items.group_by(["model", "benchmark", "task", "language", "metric"]).agg(
        value=pl.col("value").mean(), n=pl.len().cast(pl.Int64)
    )
    per_bench = items.group_by(["model", "benchmark"]).agg(
        task=pl.lit(ALL_POOLED),
        language=pl.lit(ALL),
        metric=pl.col("metric").unique().sort().str.join("/"),
        value=pl.col("value").mean(),
        n=pl.len().cast(pl.Int64),
    )
    macro = per_task.group_by(["model", "benchmark"]).agg(
        task=pl.lit(ALL),
        language=pl.lit(ALL),
        metric=pl.col("metric").unique().sort().str.join("/"),
        value=pl.col("value").mean(),
        n=pl.col("n").sum(),
    )
    frames = [per_task, macro, per_bench]
    if "cultural_label" in items.columns:
        labelled = items.filter(pl.col("cultural_label").is_not_null())
        by_label = (
            labelled.group_by(["model", "benchmark", "task", "cultural_label", "metric"])
            .agg(value=pl.col("value").mean(), n=pl.len().cast(pl.Int64))
            .group_by(["model", "benchmark", "cultural_label"])
            .agg(
                language=pl.lit(ALL),
                metric=pl.col("metric").unique().sort().str.join("/"),
                value=pl.col("value").mean(),
                n=pl.col("n").sum(),
            )
            .with_columns(task=pl.lit(ALL + " (") + pl.col("cultural_label") + pl.lit(")"))
        )
        frames.append(by_label)
    return (
        pl.concat([f.select(list(GENERAL_SCORE_SCHEMA)) for f in frames])
        .cast(GENERAL_SCORE_SCHEMA)
        .sort(["benchmark", "task", "model"])
    )


def compare_general(
    items: pl.DataFrame, pairs: Sequence[Pair], *, n_boot: int, seed: int, alpha: float
) -> pl.DataFrame:
    """Adapter vs base per task and per benchmark: the compared metric's difference and a paired
    bootstrap p-value over items; per benchmark as the macro mean over its tasks (task 'all',
    items resampled within each task) and with its items pooled (task 'all (pooled)')."""
    rows = []
    for pair in pairs:
        mine = items.filter(pl.col("model") == pair.model)
        base = items.filter(pl.col("model") == pair.base)
        units: list[tuple[str, str, str, str, pl.DataFrame, pl.DataFrame]] = []
        for (bench, task, lang, metric), part in sorted(
            mine.group_by(["benchmark", "task", "language", "metric"]), key=lambda kv: kv[0]
        ):
            units.append((bench, task, lang, metric, part, base.filter(pl.col("task") == task)))
        for (bench,), part in sorted(mine.group_by(["benchmark"]), key=lambda kv: kv[0]):
            metric = "/".join(sorted(set(part["metric"].to_list())))
            other = base.filter(pl.col("benchmark") == bench)
            units.append((bench, ALL, ALL, metric, part, other))
            units.append((bench, ALL_POOLED, ALL, metric, part, other))
            labels = sorted(set(part["cultural_label"].drop_nulls().to_list()))
            for label in labels:
                units.append(
                    (
                        bench,
                        label_task(label),
                        ALL,
                        metric,
                        part.filter(pl.col("cultural_label") == label),
                        other.filter(pl.col("cultural_label") == label),
                    )
                )
        for bench, task, lang, metric, part, other in units:
            what = f"{bench}/{task}: {pair.model} vs {pair.base}"
            if other.height == 0:
                raise InputError("general benchmark items", f"{what}: no items of {pair.base}")
            keyed = [
                t.with_columns(unit=pl.col("task") + "/" + pl.col("unit")) for t in (part, other)
            ]
            j = _aligned(
                keyed[0].select("unit", "task", "value", "doc_hash"),
                keyed[1].select("unit", "task", "value", "doc_hash"),
                "unit",
                what,
            )
            differ = j.filter(pl.col("doc_hash") != pl.col("doc_hash_base"))
            if differ.height:
                raise InputError(
                    what, f"item {differ['unit'][0]} holds different documents for the two models"
                )
            if task == ALL or task.startswith(ALL + " ("):
                r = stratified_paired_bootstrap(
                    j["value"].to_numpy(),
                    j["value_base"].to_numpy(),
                    j["task"].to_list(),
                    n_boot,
                    seed,
                    alpha,
                )
                by_task = j.group_by("task").agg(pl.col("value", "value_base").mean())
                value, value_base = (
                    float(by_task["value"].mean()),
                    float(by_task["value_base"].mean()),
                )
            else:
                r = paired_bootstrap(
                    j["value"].to_numpy(), j["value_base"].to_numpy(), n_boot, seed, alpha
                )
                value, value_base = float(j["value"].mean()), float(j["value_base"].mean())
            rows.append(
                {
                    "model": pair.model,
                    "base": pair.base,
                    "variant": pair.variant,
                    "benchmark": bench,
                    "task": task,
                    "language": lang,
                    "metric": metric,
                    "n": j.height,
                    "value_base": value_base,
                    "value": value,
                    "delta": r.delta,
                    "ci_low": r.low,
                    "ci_high": r.high,
                    "p_value": r.p_value,
                    "significant": r.p_value < alpha,
                }
            )
    return pl.DataFrame(rows, schema=GENERAL_COMPARISON_SCHEMA)
