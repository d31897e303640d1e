"""What every benchmark shares, generic over its per-item score tables: asking a model every
item's prompt, the per-group, macro and pooled aggregates, the paired comparison of (model,
base) pairs stratified by group, and the per-benchmark summaries (Markdown and JSON)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polyculture.backends.answer_cache import AnswerCache
from polyculture.backends.engine_job import (
    AnswerSettings,
    EngineJob,
    job_answers,
    member_rows,
    single_turn_answers,
)
from polyculture.backends.generation.base import adapter_load_notes, adapter_record
from polyculture.compare.pairs import (
    ALL_COUNTRIES,
    ALL_POOLED_COUNTRIES,
    Pair,
    pairs_with_results,
    stratified_paired_bootstrap,
)
from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.evals.base import ITEM_SCHEMA, SCORE_SCHEMA, BenchmarkSpec
from polyculture.io import read_table
from polyculture.stats import paired_bootstrap

log = logging.getLogger(__name__)

#: A model's answers: one per item.
RESPONSE_SCHEMA = {**ITEM_SCHEMA, "response": pl.String}

#: Aggregates of one metric: per group, the macro mean over groups ("All") and every item
#: pooled ("All (pooled)"); score in percent (mean × 100), n items, dropped answers among them.
AGGREGATE_SCHEMA = {
    "benchmark": pl.String,
    "model": pl.String,
    "metric": pl.String,
    "group": pl.String,
    "score": pl.Float64,
    "n": pl.Int64,
    "dropped": pl.Int64,
}

#: Paired differences model − base (percentage points) per group, macro and pooled: the
#: macro's bootstrap draws within each group (stratified), a group's and the pooled within it.
COMPARISON_SCHEMA = {
    "benchmark": pl.String,
    "model": pl.String,
    "base": pl.String,
    "metric": pl.String,
    "group": pl.String,
    "model_score": pl.Float64,
    "base_score": pl.Float64,
    "delta": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "n": pl.Int64,
}


#: Every answer of one engine job (benchmark_generate): the eval model's name, then its responses.
ENGINE_SCHEMA = {"model": pl.String, **RESPONSE_SCHEMA}

#: The config key of a benchmark's prompt format (named in errors).
FORMAT_KEY = "generation.prompt_format"


def response_table(
    items: pl.DataFrame, answers: Sequence[str], *, stage: str, group: str
) -> tuple[pl.DataFrame, DropCounter]:
    """The items' responses (RESPONSE_SCHEMA) and their drop counts: empty answers are counted
    as drops ('empty_response') and kept, the scorer scores them as wrong."""
    drops = DropCounter(stage=stage, group=group)
    drops.seen(len(answers))
    empty = sum(1 for a in answers if not a.strip())
    if empty:
        drops.drop("empty_response", empty)
    table = items.select(list(ITEM_SCHEMA)).with_columns(
        response=pl.Series(list(answers), dtype=pl.String)
    )
    return table.cast(RESPONSE_SCHEMA), drops


def generate_responses(
    generator: Any,
    items: pl.DataFrame,
    sampling: Any,
    *,
    prompt_format: str,
    stage: str,
    group: str,
) -> tuple[pl.DataFrame, DropCounter]:
    """Ask the model every item's prompt once (all groups in one call): as the one user turn of
    a conversation (`chat`) or as plain text (`raw`); the responses and drops (response_table)."""
    texts = items["prompt"].to_list()
    answers = single_turn_answers(generator, texts, sampling, prompt_format, FORMAT_KEY)
    return response_table(items, answers, stage=stage, group=group)


def engine_responses(
    job: EngineJob,
    items: pl.DataFrame,
    sampling: Any,
    prompt_format: str,
    cache: AnswerCache | None,
) -> pl.DataFrame:
    """Every response of one benchmark_generate job (ENGINE_SCHEMA): each eval model of the
    engine job answers every item in one call (all groups), in one engine where they are a base
    and its adapters, through the answer cache (polyculture.backends.engine_job.job_answers)."""
    how = AnswerSettings(sampling, prompt_format, FORMAT_KEY, ENGINE_SCHEMA)
    return job_answers(job, {"items": items.select(list(ITEM_SCHEMA))}, how, cache)


def model_responses(
    engine_table: str | Path, benchmark: str, model: str
) -> tuple[pl.DataFrame, DropCounter]:
    """One eval model's responses (RESPONSE_SCHEMA) and their drop counts (stage
    benchmark_generate), out of an engine job's table (a Parquet file, ENGINE_SCHEMA)."""
    rows = member_rows(pl.read_parquet(engine_table), model, RESPONSE_SCHEMA)
    table, drops = response_table(
        rows, rows["response"].to_list(), stage="benchmark_generate", group=f"{benchmark}/{model}"
    )
    log.info("%s: %d responses, %d empty", model, table.height, drops.dropped)
    return table, drops


def check_scores(scores: pl.DataFrame, spec: BenchmarkSpec, items: pl.DataFrame) -> pl.DataFrame:
    """The scorer's table with its columns checked: one row per item, the shared columns and
    the benchmark's metrics (Float64) first, then whatever else the scorer keeps (e.g. the
    parsed answer)."""
    expected = {**SCORE_SCHEMA, **dict.fromkeys(spec.metrics, pl.Float64)}
    missing = [c for c in expected if c not in scores.columns]
    if missing:
        raise InputError(spec.folder / "__init__.py", f"score() returned no column(s) {missing}")
    extra = [c for c in scores.columns if c not in expected]
    out = scores.select(*expected, *extra).cast(expected)
    if out.height != items.height or set(out["item_id"]) != set(items["item_id"]):
        raise InputError(
            spec.folder / "__init__.py",
            f"score() returned {out.height} rows for {items.height} items; expected one per item",
        )
    return out


def score_drops(scores: pl.DataFrame, stage: str, group: str) -> DropCounter:
    """Drop counts of a score table: answers the scorer could not use ('unparseable')."""
    drops = DropCounter(stage=stage, group=group)
    drops.seen(scores.height)
    n = int(scores["dropped"].sum())
    if n:
        drops.drop("unparseable", n)
    return drops


def aggregate(scores: pl.DataFrame, spec: BenchmarkSpec, model: str) -> pl.DataFrame:
    """One model's aggregates of every metric: per group (in the configured order), the macro
    mean over groups and the pooled mean (percent)."""
    rows = []
    for metric in spec.metrics:
        per_group = (
            scores.group_by("group")
            .agg(
                score=pl.col(metric).mean() * 100,
                n=pl.col(metric).count().cast(pl.Int64),
                dropped=pl.col("dropped").sum().cast(pl.Int64),
            )
            .sort("group")
        )
        order = {g: i for i, g in enumerate(spec.groups)}
        groups = sorted(
            per_group.iter_rows(named=True), key=lambda r: order.get(r["group"], 1 << 30)
        )
        rows += [{"metric": metric, **r} for r in groups]
        rows.append(
            {
                "metric": metric,
                "group": ALL_COUNTRIES,
                "score": float(np.mean([r["score"] for r in groups])) if groups else math.nan,
                "n": scores[metric].count(),
                "dropped": int(scores["dropped"].sum()),
            }
        )
        rows.append(
            {
                "metric": metric,
                "group": ALL_POOLED_COUNTRIES,
                "score": float(scores[metric].mean() * 100) if scores.height else math.nan,
                "n": scores[metric].count(),
                "dropped": int(scores["dropped"].sum()),
            }
        )
    table = pl.DataFrame(rows).with_columns(benchmark=pl.lit(spec.name), model=pl.lit(model))
    return table.select(list(AGGREGATE_SCHEMA)).cast(AGGREGATE_SCHEMA)


def _paired(a: pl.DataFrame, b: pl.DataFrame, metric: str, what: str) -> pl.DataFrame:
    """Two models' scores of one metric aligned on item (both must hold the same items); items
    neither model is scored on (null in both: e.g. a question BLEnD's rules skip) are left out."""
    joined = (
        a.select("item_id", "group", pl.col(metric).alias("a"))
        .join(
            b.select("item_id", pl.col(metric).alias("b")), on="item_id", how="full", coalesce=True
        )
        .filter(pl.col("a").is_not_null() | pl.col("b").is_not_null())
    )
    if joined.filter(pl.col("a").is_null() | pl.col("b").is_null()).height:
        raise InputError(
            what, "the two models were scored on different items; evaluate both on the same data"
        )
    return joined.sort("item_id")


def compare(
    scores: Mapping[str, pl.DataFrame],
    pairs: Sequence[Pair],
    spec: BenchmarkSpec,
    *,
    n_boot: int,
    seed: int,
    alpha: float,
) -> tuple[pl.DataFrame, list[str]]:
    """Paired differences of every (model, base) pair that both have this benchmark's results
    for, and a note for each pair left out."""
    kept, notes = pairs_with_results(pairs, list(scores), spec.name)
    rows = []
    for pair in kept:
        for metric in spec.metrics:
            j = _paired(
                scores[pair.model],
                scores[pair.base],
                metric,
                f"{spec.name}: {pair.model} vs {pair.base}",
            )
            a, b, strata = (j[c].to_numpy() for c in ("a", "b", "group"))
            per_group = [
                (
                    g,
                    paired_bootstrap(
                        a[strata == g], b[strata == g], n_boot=n_boot, seed=seed, alpha=alpha
                    ),
                )
                for g in [g for g in spec.groups if g in set(strata.tolist())]
            ]
            macro = stratified_paired_bootstrap(a, b, strata, n_boot, seed, alpha)
            pooled = paired_bootstrap(a, b, n_boot=n_boot, seed=seed, alpha=alpha)
            base_rows = [(g, r, a[strata == g].mean(), b[strata == g].mean()) for g, r in per_group]
            base_rows.append(
                (
                    ALL_COUNTRIES,
                    macro,
                    np.mean([x[2] for x in base_rows]),
                    np.mean([x[3] for x in base_rows]),
                )
            )
            base_rows.append((ALL_POOLED_COUNTRIES, pooled, a.mean(), b.mean()))
            rows += [
                {
                    "benchmark": spec.name,
                    "model": pair.model,
                    "base": pair.base,
                    "metric": metric,
                    "group": g,
                    "model_score": float(ma) * 100,
                    "base_score": float(mb) * 100,
                    "delta": r.delta * 100,
                    "ci_low": r.low * 100,
                    "ci_high": r.high * 100,
                    "p_value": r.p_value,
                    "n": r.n,
                }
                for g, r, ma, mb in base_rows
            ]
    table = (
        pl.DataFrame(rows, schema=COMPARISON_SCHEMA)
        if rows
        else pl.DataFrame(schema=COMPARISON_SCHEMA)
    )
    return table, notes


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summary_json(
    spec: BenchmarkSpec,
    aggregates: pl.DataFrame,
    comparison: pl.DataFrame,
    notes: Sequence[str],
    models: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The benchmark's results as one JSON document: the headline (macro mean over groups) per
    model, every aggregate, the paired differences, the notes on pairs left out and on
    adapters, and, where `models` (name → how it was loaded) is given, each model's
    record (:func:`polyculture.backends.generation.base.adapter_record`)."""
    head = aggregates.filter(
        (pl.col("metric") == spec.headline) & (pl.col("group") == ALL_COUNTRIES)
    )
    return {
        "benchmark": spec.name,
        "headline": {
            "metric": spec.headline,
            "aggregation": f"macro mean over {spec.group_key} ({', '.join(spec.groups)})",
            "by_model": {r["model"]: r["score"] for r in head.iter_rows(named=True)},
        },
        "aggregates": aggregates.to_dicts(),
        "comparisons": comparison.to_dicts(),
        "notes": list(notes),
        **({"models": dict(models)} if models is not None else {}),
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def summary_markdown(
    spec: BenchmarkSpec,
    aggregates: pl.DataFrame,
    comparison: pl.DataFrame,
    notes: Sequence[str],
    alpha: float,
) -> str:
    """The benchmark's results in Markdown: the headline per model and group, then each pair's
    paired differences with their interval and p-value."""
    metric = spec.headline
    agg = aggregates.filter(pl.col("metric") == metric)
    columns = [ALL_COUNTRIES, ALL_POOLED_COUNTRIES, *spec.groups]
    models = list(dict.fromkeys(agg["model"].to_list()))
    cell = {(r["model"], r["group"]): r for r in agg.iter_rows(named=True)}
    rows = []
    for m in models:
        drops = cell.get((m, ALL_COUNTRIES), {}).get("dropped", 0)
        rows.append(
            [
                m,
                *(_num(cell[(m, g)]["score"]) if (m, g) in cell else "–" for g in columns),
                str(drops),
            ]
        )
    n_row = [
        "n",
        *(
            str(cell[(models[0], g)]["n"]) if models and (models[0], g) in cell else "–"
            for g in columns
        ),
        "",
    ]
    parts = [
        f"# {spec.name}",
        "",
        f"{metric} (%), headline: macro mean over {spec.group_key} (All); All (pooled): every "
        "item pooled; dropped: unparseable answers (scored as wrong).",
        "",
        _table(["model", *columns, "dropped"], [*rows, n_row]),
    ]
    comp = comparison.filter(pl.col("metric") == metric)
    if comp.height:
        ci = f"{100 * (1 - alpha):.0f}% CI"
        crow = [
            [
                r["model"],
                r["base"],
                r["group"],
                f"{r['delta']:+.1f}",
                f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                f"{r['p_value']:.3f}",
                str(r["n"]),
            ]
            for r in comp.iter_rows(named=True)
        ]
        parts += [
            "",
            f"Paired differences model − base (points; paired bootstrap, the macro's stratified by {spec.group_key}):",
            "",
            _table(["model", "base", "group", "delta", ci, "p", "n"], crow),
        ]
    if notes:
        parts += ["", *(f"- {n}" for n in notes)]
    return "\n".join(parts) + "\n"


def score_benchmark(
    spec: BenchmarkSpec,
    items: str | Path | pl.DataFrame,
    responses: str | Path | pl.DataFrame,
    model: str,
) -> tuple[pl.DataFrame, DropCounter]:
    """One model's per-item scores on a benchmark (the model column first) and its drop
    counts. `responses` (a table or a file: Parquet, CSV, JSONL, ...) holds item_id and
    response, produced anywhere; items without a response score as dropped, wrong answers."""
    items_df = (
        items
        if isinstance(items, pl.DataFrame)
        else read_table(items, ITEM_SCHEMA, allow_empty=True)
    )
    answers = (
        responses
        if isinstance(responses, pl.DataFrame)
        else read_table(responses, {"item_id": pl.String, "response": pl.String}, allow_empty=True)
    )
    unknown = set(answers["item_id"].to_list()) - set(items_df["item_id"].to_list())
    if unknown:
        raise InputError(
            str(responses) if not isinstance(responses, pl.DataFrame) else spec.name,
            f"{len(unknown)} response(s) to items {spec.name} does not have, e.g. {sorted(unknown)[0]!r}",
        )
    scores = check_scores(
        spec.implementation().score(items_df, answers, spec.settings), spec, items_df
    )
    drops = score_drops(scores, "benchmark_score", f"{spec.name}/{model}")
    return scores.select(pl.lit(model).alias("model"), pl.all()), drops


@dataclass(frozen=True)
class BenchmarkResult:
    """A benchmark's aggregates, paired comparisons and summaries (JSON document, Markdown)."""

    aggregates: pl.DataFrame
    comparison: pl.DataFrame
    summary: dict[str, Any]
    markdown: str


def compare_benchmark(
    spec: BenchmarkSpec,
    score_files: Mapping[str, str | Path],
    pairs: Sequence[Pair | Mapping[str, str]],
    *,
    n_boot: int,
    seed: int,
    alpha: float,
    loaded: Mapping[str, Mapping[str, Any]] | None = None,
) -> BenchmarkResult:
    """Everything a benchmark reports from its models' per-item score tables (model → file);
    `loaded` (model → its load settings: model, adapter, the adapter's source) adds where each
    adapter came from and what it brought (its own tokenizer, chat template, embeddings)."""
    scores = {m: pl.read_parquet(f) for m, f in score_files.items()}
    aggregates = (
        pl.concat([aggregate(s, spec, m) for m, s in scores.items()])
        if scores
        else pl.DataFrame(schema=AGGREGATE_SCHEMA)
    )
    pair_list = [
        p if isinstance(p, Pair) else Pair(p["model"], p["base"], p["variant"]) for p in pairs
    ]
    comparison, notes = compare(scores, pair_list, spec, n_boot=n_boot, seed=seed, alpha=alpha)
    records = None
    if loaded is not None:
        notes = [*notes, *adapter_load_notes(loaded)]
        records = {m: adapter_record(settings) for m, settings in loaded.items()}
    return BenchmarkResult(
        aggregates,
        comparison,
        summary_json(spec, aggregates, comparison, notes, records),
        summary_markdown(spec, aggregates, comparison, notes, alpha),
    )
