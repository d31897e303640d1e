"""Comparing evaluated models: adapters against their base model on BLEnD and general benchmarks.

- Pairs: an eval model with an adapter is compared with the eval model that lists the same base
  model without an adapter (:func:`pair_models`).
- BLEnD: per country, language and prompt template, and per country and language over both
  templates (prompt ``all``: a question's score is its mean over the templates), SEM-B and SEM-W
  of both models on the same valid questions, the difference and a paired bootstrap over
  questions (:func:`polyculture.stats.paired_bootstrap`). Two summary rows per language kind
  (questions in English, ``language_kind`` English; or in each country's own language,
  ``local``; UK and US have none):

  - country ``All`` — the **macro mean**, the headline: the mean of the per-country scores, as
    the paper reports its results (its +5.03 SEM-B is the mean over the 16 regions). Its paired
    bootstrap resamples questions within each country and averages the per-country
    differences (:func:`stratified_paired_bootstrap`), so every country keeps its weight.
  - country ``All (pooled)`` — every country's questions pooled into one sample (larger
    countries weigh more), labelled as such, beside it.
- General benchmarks: per task, and per benchmark over its languages as the macro mean of the
  per-task scores (task ``all``: the paper's Table 2 averages over languages; bootstrap within
  each task) and pooled over items (task ``all (pooled)``).
- Ablation: one row per training variant (full / random_selection / no_region_filter) with the
  macro-mean differences to the base model, and the base model's own scores.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl

from polyculture.errors import InputError
from polyculture.io import atomic_path
from polyculture.stats import PairedBootstrap, paired_bootstrap

ALL = "all"  # prompt id of scores averaged over the prompt templates; benchmark macro mean
ALL_POOLED = "all (pooled)"  # benchmark task: items of every language pooled
ALL_COUNTRIES = "All"  # macro mean over countries (the headline)
ALL_POOLED_COUNTRIES = "All (pooled)"  # every country's questions pooled
SUMMARY_COUNTRIES = (ALL_COUNTRIES, ALL_POOLED_COUNTRIES)
_BOOT_CHUNK = 1000
_Label = TypeVar("_Label", bound=Hashable)  # what a bar of a grouped bar chart stands for

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


@dataclass(frozen=True)
class Pair:
    """An adapter model, the base model it is compared with, and its training variant."""

    model: str
    base: str
    variant: str


def pair_models(eval_models: Sequence[Mapping[str, Any]]) -> tuple[list[Pair], list[str]]:
    """Adapter/base pairs among the eval models, and notes on adapters without a base entry."""
    bases: dict[str, str] = {}
    for m in eval_models:
        if not m.get("adapter"):
            bases.setdefault(m["model"], m["name"])
    pairs, notes = [], []
    for m in eval_models:
        if not m.get("adapter"):
            continue
        base = bases.get(m["model"])
        if base is None:
            notes.append(
                f"{m['name']} (adapter {m['adapter']}) is not compared: no eval model lists its base "
                f"model {m['model']} without an adapter"
            )
            continue
        pairs.append(Pair(m["name"], base, m["adapter"]))
    return pairs, notes


# --------------------------------------------------------------------------- BLEnD


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


def stratified_paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    strata: Sequence[Hashable],
    n_boot: int,
    seed: int,
    alpha: float,
) -> PairedBootstrap:
    """Paired bootstrap of the macro mean difference: the mean over strata (countries, tasks) of
    mean(a − b) within each stratum. Each resample draws every stratum's items with replacement
    from that stratum only, so each stratum keeps its own size and weight 1/#strata. p-value and
    interval as in :func:`polyculture.stats.paired_bootstrap` (two-sided, bootstrap distribution
    centred on the observed δ)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    labels = np.asarray([str(s) for s in strata])
    if x.shape != y.shape or x.shape != labels.shape or x.ndim != 1:
        raise ValueError("stratified bootstrap: a, b and strata must be 1-D of the same length")
    if x.size == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"n_boot must be >= 1 and alpha in (0, 1); got {n_boot}, {alpha}")
    d = x - y
    groups = [d[labels == s] for s in sorted(set(labels.tolist()))]
    delta = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    sums = np.zeros(n_boot)
    for g in groups:
        for start in range(0, n_boot, _BOOT_CHUNK):
            size = min(_BOOT_CHUNK, n_boot - start)
            idx = rng.integers(0, g.size, size=(size, g.size))
            sums[start : start + size] += g[idx].mean(axis=1)
    deltas = sums / len(groups)
    tol = 1e-12 * max(1.0, abs(delta))
    extreme = int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta) - tol))
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, (1 + extreme) / (n_boot + 1))
    return PairedBootstrap(delta, float(low), float(high), float(p_value), int(x.size), n_boot)


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
    per_stratum = q.group_by([*keys, "stratum"]).agg(
        sem_b=100 * pl.col("match").mean(),
        sem_w=100 * pl.col("weight").mean(),
        n_valid=pl.len().cast(pl.Int64),
        n_pooled_b=pl.col("match").sum(),
        n_pooled_w=pl.col("weight").sum(),
    )
    pooled = pl.col("country") == ALL_POOLED_COUNTRIES
    macro_rows = (
        per_stratum.filter(~pooled)
        .group_by(keys)
        .agg(pl.col("sem_b").mean(), pl.col("sem_w").mean(), pl.col("n_valid").sum())
    )
    pooled_rows = (
        per_stratum.filter(pooled)
        .group_by(keys)
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


def _aligned(a: pl.DataFrame, b: pl.DataFrame, key: str, what: str) -> pl.DataFrame:
    """Join two models' per-unit scores on `key`; both must hold the same units."""
    joined = a.join(b, on=key, how="full", suffix="_base", coalesce=True)
    cols = [c for c in joined.columns if c != key]
    unmatched = joined.filter(pl.any_horizontal(pl.col(cols).is_null()))
    if unmatched.height:
        raise InputError(
            what,
            f"the two models were scored on different items ({unmatched.height} unmatched, "
            f"e.g. {unmatched[key][0]}); evaluate both on the same data",
        )
    return joined.sort(key)


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


# --------------------------------------------------------------------------- general benchmarks


def compared_items(items: pl.DataFrame, metrics: Mapping[str, str]) -> pl.DataFrame:
    """The per-item scores of each task's compared metric, with a unit key per item."""
    chosen = pl.DataFrame({"task": list(metrics), "metric": list(metrics.values())})
    if "cultural_label" not in items.columns:
        items = items.with_columns(cultural_label=pl.lit(None, dtype=pl.String))
    return items.join(chosen, on=["task", "metric"], how="inner").with_columns(
        unit=pl.col("subtask") + "/" + pl.col("doc_id").cast(pl.String)
    )


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


# --------------------------------------------------------------------------- ablation


def ablation_table(
    blend_cmp: pl.DataFrame,
    general_cmp: pl.DataFrame,
    blend_sc: pl.DataFrame,
    general_sc: pl.DataFrame,
    pairs: Sequence[Pair],
    variants: Sequence[str],
) -> pl.DataFrame:
    """One row per base model compared and per listed training variant: pooled SEM-B (English,
    local) and benchmark scores, with differences to the base and p-values (base rows: none)."""
    benches = sorted(set(general_sc["benchmark"].to_list())) if general_sc.height else []
    kinds = [("English", "en"), ("local", "local")]
    rows = []
    by_variant = {p.variant: p for p in pairs}
    bases = []
    for v in variants:
        if v in by_variant and by_variant[v].base not in bases:
            bases.append(by_variant[v].base)

    def blend_value(model: str, lang: str) -> float | None:
        hit = blend_sc.filter(
            (pl.col("model") == model)
            & (pl.col("country") == ALL_COUNTRIES)
            & (pl.col("language") == lang)
            & (pl.col("prompt_id") == ALL)
        )
        return float(hit["sem_b"][0]) if hit.height else None

    def bench_value(model: str, bench: str) -> float | None:
        hit = general_sc.filter(
            (pl.col("model") == model) & (pl.col("benchmark") == bench) & (pl.col("task") == ALL)
        )
        return float(hit["value"][0]) if hit.height else None

    for base in bases:
        row: dict[str, Any] = {"variant": "base", "model": base, "base": base}
        for kind, lang in kinds:
            row[f"sem_b_{kind}"] = blend_value(base, lang)
            row[f"delta_sem_b_{kind}"] = row[f"p_sem_b_{kind}"] = None
        for bench in benches:
            row[bench] = bench_value(base, bench)
            row[f"delta_{bench}"] = row[f"p_{bench}"] = None
        rows.append(row)
        for v in variants:
            pair = by_variant.get(v)
            if pair is None or pair.base != base:
                continue
            row = {"variant": v, "model": pair.model, "base": base}
            for kind, lang in kinds:
                hit = blend_cmp.filter(
                    (pl.col("model") == pair.model)
                    & (pl.col("country") == ALL_COUNTRIES)
                    & (pl.col("language") == lang)
                    & (pl.col("prompt_id") == ALL)
                )
                row[f"sem_b_{kind}"] = float(hit["sem_b"][0]) if hit.height else None
                row[f"delta_sem_b_{kind}"] = float(hit["delta_sem_b"][0]) if hit.height else None
                row[f"p_sem_b_{kind}"] = float(hit["p_sem_b"][0]) if hit.height else None
            for bench in benches:
                hit = general_cmp.filter(
                    (pl.col("model") == pair.model)
                    & (pl.col("benchmark") == bench)
                    & (pl.col("task") == ALL)
                )
                row[bench] = float(hit["value"][0]) if hit.height else None
                row[f"delta_{bench}"] = float(hit["delta"][0]) if hit.height else None
                row[f"p_{bench}"] = float(hit["p_value"][0]) if hit.height else None
            rows.append(row)
    schema: dict[str, Any] = {"variant": pl.String, "model": pl.String, "base": pl.String}
    for kind, _ in kinds:
        schema |= {
            f"sem_b_{kind}": pl.Float64,
            f"delta_sem_b_{kind}": pl.Float64,
            f"p_sem_b_{kind}": pl.Float64,
        }
    for bench in benches:
        schema |= {bench: pl.Float64, f"delta_{bench}": pl.Float64, f"p_{bench}": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p(p: float | None, alpha: float) -> str:
    if p is None:
        return "–"
    return f"{p:.3f}{' *' if p < alpha else ''}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _model_cells(
    part: pl.DataFrame, models: Sequence[str], column: str, digits: int = 2
) -> list[str]:
    """Each model's `column` in `part` (one row per model), formatted; '–' for a model that has
    no row."""
    vals = {r["model"]: r[column] for r in part.iter_rows(named=True)}
    return [_fmt(vals[m], digits) if m in vals else "–" for m in models]


def markdown_report(
    blend_sc: pl.DataFrame,
    blend_cmp: pl.DataFrame,
    general_sc: pl.DataFrame,
    general_cmp: pl.DataFrame,
    ablation: pl.DataFrame,
    *,
    alpha: float,
    n_boot: int,
    notes: Sequence[str] = (),
    published: Mapping[str, Any] | None = None,
) -> str:
    """The comparison tables as Markdown (scores, adapter vs base, ablation; the published
    headline figures beside the run's where `published` gives them)."""
    models = sorted(set(blend_sc["model"].to_list()) | set(general_sc["model"].to_list()))
    out = [
        "# Model comparison",
        "",
        f"Paired bootstrap over questions (BLEnD) or items (benchmarks), {n_boot:,} resamples; "
        f"`*` marks p < {alpha}. SEM-B/SEM-W in percent; 'all' = mean over the prompt templates. "
        "Headline: country 'All' = **macro mean**, the mean of the per-country scores (as the "
        "paper reports; bootstrap resamples questions within each country); 'All (pooled)' = "
        "every country's questions pooled (larger countries weigh more). Benchmarks: task "
        "'all' = macro mean over the benchmark's languages (tasks), 'all (pooled)' = items "
        "pooled, 'all (CS)' / 'all (CA)' = macro mean over the items Global-MMLU labels "
        "culturally sensitive / culturally agnostic.",
        "",
    ]
    out += [f"> {n}" for n in notes] + ([""] if notes else [])
    if published:
        out += [published_section(published, blend_cmp, general_cmp)]
    out += ["## BLEnD SEM-B per country (mean over prompt templates)", ""]
    wide = blend_sc.filter(pl.col("prompt_id") == ALL)
    rows = []
    for (country, language), part in sorted(
        wide.group_by(["country", "language"]),
        key=lambda kv: (kv[0][0] in SUMMARY_COUNTRIES, kv[0]),
    ):
        rows.append(
            [country, language, str(part["n_valid"].max())] + _model_cells(part, models, "sem_b")
        )
    out += [_md_table(["country", "language", "n valid", *models], rows), ""]
    out += ["## BLEnD: adapter vs base", ""]
    if blend_cmp.height:
        sel = blend_cmp.filter(pl.col("prompt_id") == ALL)
        rows = [
            [
                r["model"],
                r["base"],
                r["country"],
                r["language"],
                _fmt(r["sem_b_base"]),
                _fmt(r["sem_b"]),
                f"{r['delta_sem_b']:+.2f} [{r['ci_low_sem_b']:+.2f}, {r['ci_high_sem_b']:+.2f}]",
                _p(r["p_sem_b"], alpha),
                f"{r['delta_sem_w']:+.2f}",
                _p(r["p_sem_w"], alpha),
            ]
            for r in sel.iter_rows(named=True)
        ]
        out += [
            _md_table(
                [
                    "model",
                    "base",
                    "country",
                    "language",
                    "SEM-B base",
                    "SEM-B",
                    "ΔSEM-B [95% CI]",
                    "p",
                    "ΔSEM-W",
                    "p (W)",
                ],
                rows,
            ),
            "",
        ]
    else:
        out += ["No adapter with a base model among the evaluated models.", ""]
    out += ["## General benchmarks", ""]
    rows = []
    for (bench, task), part in sorted(
        general_sc.group_by(["benchmark", "task"]),
        key=lambda kv: (kv[0][0], is_summary_task(kv[0][1]), kv[0][1]),
    ):
        first = part.row(0, named=True)
        rows.append(
            [bench, task, first["language"], first["metric"], str(first["n"])]
            + _model_cells(part, models, "value", 3)
        )
    out += [_md_table(["benchmark", "task", "language", "metric", "n", *models], rows), ""]
    if general_cmp.height:
        out += ["## General benchmarks: adapter vs base", ""]
        rows = [
            [
                r["model"],
                r["base"],
                r["benchmark"],
                r["task"],
                r["metric"],
                _fmt(r["value_base"], 3),
                _fmt(r["value"], 3),
                f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                _p(r["p_value"], alpha),
            ]
            for r in general_cmp.iter_rows(named=True)
        ]
        out += [
            _md_table(
                [
                    "model",
                    "base",
                    "benchmark",
                    "task",
                    "metric",
                    "base",
                    "adapter",
                    "Δ [95% CI]",
                    "p",
                ],
                rows,
            ),
            "",
        ]
    out += ["## Ablation (macro mean over countries, mean over prompt templates)", ""]
    if ablation.height:
        benches = [
            c
            for c in ablation.columns
            if c not in ("variant", "model", "base")
            and not c.startswith(("delta_", "p_", "sem_b_"))
        ]
        header = ["variant", "model", "SEM-B English", "Δ (p)", "SEM-B local", "Δ (p)"]
        for b in benches:
            header += [b, "Δ (p)"]
        rows = []
        for r in ablation.iter_rows(named=True):
            row = [r["variant"], r["model"]]
            for kind in ("English", "local"):
                d = r[f"delta_sem_b_{kind}"]
                row += [
                    _fmt(r[f"sem_b_{kind}"]),
                    "–" if d is None else f"{d:+.2f} ({_p(r[f'p_sem_b_{kind}'], alpha)})",
                ]
            for b in benches:
                d = r[f"delta_{b}"]
                row += [_fmt(r[b], 3), "–" if d is None else f"{d:+.3f} ({_p(r[f'p_{b}'], alpha)})"]
            rows.append(row)
        out += [_md_table(header, rows), ""]
    else:
        out += ["No training variant of the ablation list is among the evaluated models.", ""]
    return "\n".join(out)


def published_section(
    published: Mapping[str, Any], blend_cmp: pl.DataFrame, general_cmp: pl.DataFrame
) -> str:
    """Markdown: the published headline figures (config evaluate.compare.published, facts from
    the paper) beside this run's for the same quantity: the macro-mean ΔSEM-B over countries per
    question language and the macro-mean Δ per benchmark (percentage points), of the adapter of
    the published `variant` against its base."""
    variant = published.get("variant", "full")
    lines = [
        "## Published figures beside this run",
        "",
        f"Source: {published.get('source', 'the paper')}. Published values are the paper's, as "
        f"printed; 'this run' is the adapter of variant `{variant}` against its base model "
        "(macro means, percentage points).",
        "",
        "| quantity | published | this run | p (this run) |",
        "|---|---|---|---|",
    ]
    runs = blend_cmp.filter((pl.col("variant") == variant) & (pl.col("prompt_id") == ALL))
    for kind, value in (published.get("blend_delta_sem_b") or {}).items():
        lang = "en" if kind == "English" else "local"
        hit = runs.filter((pl.col("country") == ALL_COUNTRIES) & (pl.col("language") == lang))
        mine = f"{hit['delta_sem_b'][0]:+.2f}" if hit.height else "–"
        p = f"{hit['p_sem_b'][0]:.3f}" if hit.height else "–"
        lines.append(
            f"| ΔSEM-B, questions in {kind}, mean over regions | {value:+.2f} | {mine} | {p} |"
        )
    for kind, regions in (published.get("blend_sem_b") or {}).items():
        lang_kind = "English" if kind == "English" else "local"
        for region, value in regions.items():
            hit = runs.filter(
                (pl.col("country") == region) & (pl.col("language_kind") == lang_kind)
            )
            mine = f"{hit['sem_b'][0]:.2f}" if hit.height else "–"
            lines.append(f"| SEM-B {region}, {kind} | {value:.2f} | {mine} | – |")
    gen = general_cmp.filter((pl.col("variant") == variant) & (pl.col("task") == ALL))
    for bench, value in (published.get("benchmark_delta") or {}).items():
        hit = gen.filter(pl.col("benchmark") == bench)
        mine = f"{100 * hit['delta'][0]:+.2f}" if hit.height else "–"
        p = f"{hit['p_value'][0]:.3f}" if hit.height else "–"
        lines.append(f"| Δ {bench}, mean over languages | {value:+.2f} | {mine} | {p} |")
    return "\n".join(lines) + "\n"


def _grouped_bars(
    ax: Any,
    models: Sequence[str],
    labels: Sequence[_Label],
    values: Mapping[str, Mapping[_Label, float]],
    starred: Collection[tuple[str, _Label]],
    *,
    star_offset: float,
) -> None:
    """One bar per model side by side at each label (0 where a model has no value), a star
    `star_offset` above each bar whose (model, label) is in `starred`."""
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        xs = [k + (i - (len(models) - 1) / 2) * width for k in range(len(labels))]
        ys = [values[m].get(lab, 0.0) for lab in labels]
        ax.bar(xs, ys, width=width, label=m)
        for x, y, lab in zip(xs, ys, labels, strict=True):
            if (m, lab) in starred:
                ax.text(x, y + star_offset, "*", ha="center", va="bottom", fontsize=12)


def _save_figure(fig: Any, path: str | os.PathLike[str], alpha: float) -> None:
    """Write `fig` to `path` atomically (PNG whatever the name, no software stamp) with the
    footnote that explains the stars, and close it."""
    import matplotlib.pyplot as plt

    fig.text(
        0.99, 0.005, f"* adapter vs base: paired bootstrap p < {alpha}", ha="right", fontsize=7
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def plot_blend(
    blend_sc: pl.DataFrame,
    blend_cmp: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    alpha: float,
) -> None:
    """Per-country SEM-B bars (mean over prompt templates) of every model, in English and in
    the local language; a star marks an adapter that differs from its base with p < alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = blend_sc.filter(pl.col("prompt_id") == ALL)
    models = sorted(set(data["model"].to_list()))
    sig = {
        (r["model"], r["country"], r["language_kind"])
        for r in blend_cmp.filter(
            (pl.col("prompt_id") == ALL) & pl.col("significant_sem_b")
        ).iter_rows(named=True)
    }
    kinds = [k for k in ("English", "local") if data.filter(pl.col("language_kind") == k).height]
    fig, axes = plt.subplots(
        len(kinds),
        1,
        figsize=(
            max(6.0, 0.9 * data["country"].n_unique() * max(1, len(models)) / 2 + 3),
            3.2 * len(kinds),
        ),
        squeeze=False,
    )
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        part = data.filter(pl.col("language_kind") == kind)
        countries = sorted(set(part["country"].to_list()) - set(SUMMARY_COUNTRIES)) + list(
            SUMMARY_COUNTRIES
        )
        values = {
            m: {
                r["country"]: r["sem_b"]
                for r in part.filter(pl.col("model") == m).iter_rows(named=True)
            }
            for m in models
        }
        starred = {(m, c) for m, c, k in sig if k == kind}
        _grouped_bars(ax, models, countries, values, starred, star_offset=1)
        ax.set_xticks(range(len(countries)))
        ax.set_xticklabels([c.replace("_", " ") for c in countries], rotation=30, ha="right")
        ax.set_ylabel("SEM-B (%)")
        ax.set_ylim(0, 105)
        ax.set_title(
            f"BLEnD SEM-B, questions in {'English' if kind == 'English' else 'the local language'}"
        )
    axes[0, 0].legend(fontsize=8, loc="upper left", ncols=min(4, len(models)))
    _save_figure(fig, path, alpha)


def plot_general(
    general_sc: pl.DataFrame,
    general_cmp: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    alpha: float,
) -> None:
    """Benchmark scores per task (and per benchmark, 'all') of every model; a star marks an
    adapter that differs from its base with p < alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(set(general_sc["model"].to_list()))
    labels = sorted(
        {(r["benchmark"], r["task"]) for r in general_sc.iter_rows(named=True)},
        key=lambda bt: (bt[0], is_summary_task(bt[1]), bt[1]),
    )
    sig = {
        (r["model"], r["benchmark"], r["task"])
        for r in general_cmp.filter(pl.col("significant")).iter_rows(named=True)
    }
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(labels) * max(1, len(models)) / 2 + 3), 3.6))
    values = {
        m: {
            (r["benchmark"], r["task"]): r["value"]
            for r in general_sc.filter(pl.col("model") == m).iter_rows(named=True)
        }
        for m in models
    }
    starred = {(m, (b, t)) for m, b, t in sig}
    _grouped_bars(ax, models, labels, values, starred, star_offset=0.01)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(
        [f"{b}: {t}" if is_summary_task(t) else t for b, t in labels],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("score (compared metric)")
    ax.set_ylim(0, 1.05)
    ax.set_title("General benchmarks")
    ax.legend(fontsize=8, loc="upper left", ncols=min(4, len(models)))
    _save_figure(fig, path, alpha)
