"""Readers of the released material of "Multilingual != Multicultural" (Rystrøm et al. 2025;
code jhrystrom/multicultural-alignment) and of capability tables, into the canonical tables of
:mod:`polyculture.wvs.alignment`.

- judged responses: ``all_lang_model_responses_with_scores.csv`` (or the Hugging Face dataset
  ``ryzzlestrizzle/multicultural-wvs-alignment``, same columns less template_type and
  response_language): model_name, model_family, language, question_key, response_pro_score,
  optionally template_type, response_language, ground_truth_pro_score;
- ground truth: ``ground_truth_every_country.csv`` (cntry_an, question_key, pro_score,
  lnge_iso), ``ground_truth_per_language.csv`` (lnge_iso, question_key, pro_score),
  ``ground_truth_global.csv`` (question_key, pro_score); topic keys are lower-cased as the
  released analysis does;
- ``country_languages.csv`` (cntry_AN, lnge_iso); ``gt_self_consistency.csv`` (cntry_AN,
  self_consistency);
- capability tables: model, benchmark, language (ISO code or English name), score — the paper's
  Table 3 or the released ``multilingual_benchmarks.csv``; capability = mean score per model ×
  language divided by `scale` (the released analysis: mean of the benchmarks / 100).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.io import read_table
from polyculture.languages import is_language_code, iso639_1
from polyculture.wvs.alignment import (
    GROUND_TRUTH_SCHEMA,
    check_country_languages,
    check_ground_truth,
    check_responses,
    require_columns,
)

RELEASED_RESPONSE_COLUMNS = (
    "model_name",
    "model_family",
    "language",
    "question_key",
    "response_pro_score",
)


def _first_present(df: pl.DataFrame, names: Sequence[str], source: object, what: str) -> str:
    for n in names:
        if n in df.columns:
            return n
    raise InputError(
        source,
        f"no {what} column (expected one of {', '.join(repr(n) for n in names)}; "
        f"found: {', '.join(df.columns) or 'none'})",
    )


def restrict_countries(
    gt: pl.DataFrame, cl: pl.DataFrame, human: pl.DataFrame, countries: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Ground truth, country languages and human consistency with the country level limited to
    `countries` (language and global levels untouched)."""
    have = set(gt.filter(pl.col("level") == "country")["group"].to_list())
    unknown = sorted(set(countries) - have)
    if unknown:
        raise InputError(
            "alignment.countries",
            f"no country-level ground truth for {', '.join(unknown)} "
            f"(the ground truth has: {', '.join(sorted(have))})",
        )
    keep = set(countries)
    gt = gt.filter((pl.col("level") != "country") | pl.col("group").is_in(list(keep)))
    cl = cl.filter(pl.col("country").is_in(list(keep)))
    drop = have - keep
    human = human.filter(~pl.col("group").is_in(list(drop)))
    return gt, cl, human


def released_responses(
    df: pl.DataFrame, source: object, template_type: str | None = "survey_hypothetical"
) -> tuple[pl.DataFrame, pl.DataFrame, DropCounter]:
    """Canonical responses, the merged ground truth they carry (level 'merged', may be empty)
    and the drop counts, from a released judged-response table.

    Rows of another template type (when the table has template_type and `template_type` is
    set) or whose response_language differs from the prompt language are dropped and counted,
    as are responses without any pro or con summary (null polarity). response_id is the row
    number in the table.
    """
    require_columns(df, RELEASED_RESPONSE_COLUMNS, source)
    drops = DropCounter(stage="alignment_inputs", group="released responses")
    drops.seen(df.height)
    work = df.with_row_index("_row")
    if template_type is not None and "template_type" in work.columns:
        keep = pl.col("template_type") == template_type
        drops.drop("other template type", int(work.filter(~keep).height))
        work = work.filter(keep)
    if "response_language" in work.columns:
        keep = pl.col("response_language") == pl.col("language")
        drops.drop("response not in the prompt language", int(work.filter(~keep).height))
        work = work.filter(keep)
    score = pl.col("response_pro_score").cast(pl.Float64, strict=False)
    no_score = score.is_null() | score.is_nan()
    drops.drop("no pro or con summary", int(work.filter(no_score).height))
    work = work.filter(~no_score)
    responses = check_responses(
        work.select(
            pl.col("model_name").alias("model"),
            pl.col("model_family").alias("family"),
            pl.col("language").cast(pl.String).str.to_lowercase(),
            pl.col("question_key").cast(pl.String).str.to_lowercase(),
            pl.format("row{}", pl.col("_row")).alias("response_id"),
            score.alias("pro_score"),
        ),
        source,
    )
    merged = pl.DataFrame(schema=GROUND_TRUTH_SCHEMA)
    if "ground_truth_pro_score" in work.columns:
        m = (
            work.select(
                pl.lit("merged").alias("level"),
                pl.col("language").cast(pl.String).str.to_lowercase().alias("group"),
                pl.col("question_key").cast(pl.String).str.to_lowercase(),
                pl.col("ground_truth_pro_score").cast(pl.Float64, strict=False).alias("polarity"),
            )
            .filter(pl.col("polarity").is_not_null())
            .unique(maintain_order=True)
        )
        merged = check_ground_truth(m, f"{source} (column ground_truth_pro_score)")
    return responses, merged, drops


def read_released_responses(
    path: str | os.PathLike[str], template_type: str | None = "survey_hypothetical"
) -> tuple[pl.DataFrame, pl.DataFrame, DropCounter]:
    """:func:`released_responses` of a CSV / Parquet file."""
    return released_responses(read_table(path), path, template_type)


def load_hub_responses(
    hub_id: str, revision: str | None = None, split: str = "train"
) -> pl.DataFrame:
    """Download the released judged responses from the Hugging Face hub (needs network and the
    `datasets` package): the table :func:`released_responses` reads."""
    from datasets import load_dataset  # imported here: only users with a hub need it

    ds = load_dataset(hub_id, revision=revision, split=split)
    return pl.from_arrow(ds.data.table)  # type: ignore[return-value]


def read_released_ground_truth(
    country_path: str | os.PathLike[str] | None = None,
    language_path: str | os.PathLike[str] | None = None,
    global_path: str | os.PathLike[str] | None = None,
) -> pl.DataFrame:
    """Canonical ground truth from the released per-country, per-language and global files
    (any subset); topic keys lower-cased."""
    parts = []
    if country_path is not None:
        df = read_table(country_path)
        c = _first_present(df, ("cntry_an", "cntry_AN", "country"), country_path, "country")
        require_columns(df, ("question_key", "pro_score"), country_path)
        parts.append(
            df.select(
                pl.lit("country").alias("level"),
                pl.col(c).cast(pl.String).alias("group"),
                "question_key",
                pl.col("pro_score").alias("polarity"),
            )
        )
    if language_path is not None:
        df = read_table(language_path)
        lang = _first_present(df, ("lnge_iso", "language"), language_path, "language")
        require_columns(df, ("question_key", "pro_score"), language_path)
        parts.append(
            df.select(
                pl.lit("language").alias("level"),
                pl.col(lang).cast(pl.String).str.to_lowercase().alias("group"),
                "question_key",
                pl.col("pro_score").alias("polarity"),
            )
        )
    if global_path is not None:
        df = read_table(global_path)
        require_columns(df, ("question_key", "pro_score"), global_path)
        parts.append(
            df.select(
                pl.lit("global").alias("level"),
                pl.lit("global").alias("group"),
                "question_key",
                pl.col("pro_score").alias("polarity"),
            )
        )
    if not parts:
        raise InputError("ground truth", "no ground-truth file given (country, language or global)")
    frames = [
        p.with_columns(pl.col("question_key").cast(pl.String), pl.col("polarity").cast(pl.Float64))
        for p in parts
    ]
    return check_ground_truth(
        pl.concat(frames),
        ", ".join(str(p) for p in (country_path, language_path, global_path) if p),
    )


def read_released_country_languages(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Canonical country → language table from the released country_languages.csv."""
    df = read_table(path)
    c = _first_present(df, ("cntry_AN", "cntry_an", "country"), path, "country")
    lang = _first_present(df, ("lnge_iso", "language"), path, "language")
    return check_country_languages(
        df.select(pl.col(c).alias("country"), pl.col(lang).alias("language")), path
    )


def read_human_consistency(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Human self-consistency per population: columns group, consistency.

    Reads the released gt_self_consistency.csv (cntry_AN, self_consistency) or the workflow's
    table (group or country, and consistency / self_consistency / mean_correlation); a
    table with one row per resampling draw pair is averaged per group."""
    df = read_table(path)
    g = _first_present(df, ("group", "country", "cntry_AN", "cntry_an"), path, "population")
    v = _first_present(
        df,
        ("consistency", "self_consistency", "mean", "correlation", "mean_correlation"),
        path,
        "consistency",
    )
    level = [pl.col("level")] if "level" in df.columns else []
    out = (
        df.select(
            *level,
            pl.col(g).cast(pl.String).alias("group"),
            pl.col(v).cast(pl.Float64).alias("consistency"),
        )
        .group_by([*(["level"] if level else []), "group"], maintain_order=True)
        .agg(pl.col("consistency").mean())
    )
    if "level" in out.columns:
        country = out.filter(pl.col("level") == "country")
        out = country if country.height else out
        out = out.drop("level")
    if out.filter(~pl.col("consistency").is_between(-1.0, 1.0)).height:
        raise InputError(path, "a consistency lies outside [-1, 1] (expected a correlation)")
    return out.sort("group")


def language_code(value: str, source: object) -> str:
    """ISO 639-1 code of a language given as a code or an English name ('Danish' → 'da')."""
    v = value.strip()
    if is_language_code(v.lower()):
        return v.lower()
    by_name = {name.lower(): code for code, name in iso639_1().items()}
    for name, code in list(by_name.items()):
        for part in re.split(r"[;,]\s*", name):
            by_name.setdefault(part.strip(), code)
    code = by_name.get(v.lower())
    if code is None:
        raise InputError(
            source, f"language '{value}' is neither an ISO 639-1 code nor a language name"
        )
    return code


def capability_table(
    df: pl.DataFrame,
    source: object,
    *,
    model_aliases: Mapping[str, str] | None = None,
    scale: float = 100.0,
    exclude_benchmarks: Sequence[str] = (),
) -> pl.DataFrame:
    """Capability per model × language: mean benchmark score / `scale`.

    `df` has columns model, benchmark, language, score. Model names are mapped through
    `model_aliases` (e.g. the paper's 'Gemma-2 2B' → 'gemma-2-2b-it'); benchmarks matching any
    regular expression in `exclude_benchmarks` are left out. Output columns: model, language,
    capability, n_benchmarks, benchmarks (sorted, ';'-joined).
    """
    require_columns(df, ("model", "benchmark", "language", "score"), source)
    if scale <= 0:
        raise InputError(source, f"capability scale must be positive, got {scale}")
    aliases = dict(model_aliases or {})
    langs = {v: language_code(v, source) for v in df["language"].cast(pl.String).unique().to_list()}
    work = df.select(
        pl.col("model").cast(pl.String).replace(aliases),
        pl.col("benchmark").cast(pl.String),
        pl.col("language").cast(pl.String).replace_strict(langs),
        pl.col("score").cast(pl.Float64, strict=False),
    )
    bad = work.with_row_index("_row").filter(pl.col("score").is_null() | pl.col("score").is_nan())
    if bad.height:
        raise InputError(source, f"row {bad['_row'][0]}: score is not a number")
    for pattern in exclude_benchmarks:
        work = work.filter(~pl.col("benchmark").str.contains(pattern))
    if work.height == 0:
        raise InputError(source, "no benchmark scores left after exclusions")
    return (
        work.group_by("model", "language")
        .agg(
            (pl.col("score").mean() / scale).alias("capability"),
            pl.len().cast(pl.Int64).alias("n_benchmarks"),
            pl.col("benchmark").sort().str.join(";").alias("benchmarks"),
        )
        .sort("model", "language")
    )


def read_capability_table(
    path: str | os.PathLike[str],
    *,
    model_aliases: Mapping[str, str] | None = None,
    scale: float = 100.0,
    exclude_benchmarks: Sequence[str] = (),
) -> pl.DataFrame:
    """:func:`capability_table` of a CSV / Parquet file."""
    return capability_table(
        read_table(path),
        path,
        model_aliases=model_aliases,
        scale=scale,
        exclude_benchmarks=exclude_benchmarks,
    )


def describe_path(path: str | os.PathLike[str]) -> str:
    """File name for notes (no directories: notes must not depend on where data lives)."""
    return Path(path).name


# ----------------------------------------------------------------------------------------------
# The workflow's own tables (source: workflow)
# ----------------------------------------------------------------------------------------------


def responses_from_scored(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[pl.DataFrame, DropCounter]:
    """Canonical responses from the WVS pipeline's scored tables (one per eval model); responses
    without a polarity (no pro or con summary) are dropped and counted."""
    if not paths:
        raise InputError("alignment.responses", "no scored response tables (is eval_models empty?)")
    drops = DropCounter(stage="alignment_inputs", group="workflow responses")
    frames = []
    for path in paths:
        df = read_table(path, allow_empty=True)
        require_columns(
            df, ("model", "family", "language", "question_key", "response_id", "pro_score"), path
        )
        drops.seen(df.height)
        score = pl.col("pro_score").cast(pl.Float64, strict=False)
        bad = score.is_null() | score.is_nan()
        drops.drop("no pro or con summary", int(df.filter(bad).height))
        frames.append(
            df.filter(~bad).select(
                pl.col("model").cast(pl.String),
                pl.col("family").cast(pl.String),
                pl.col("language").cast(pl.String),
                pl.col("question_key").cast(pl.String).str.to_lowercase(),
                pl.col("response_id").cast(pl.String),
                score.alias("pro_score"),
            )
        )
    responses = pl.concat(frames)
    if responses.height == 0:
        raise InputError(", ".join(str(p) for p in paths), "no scored response has a polarity")
    return check_responses(responses, ", ".join(Path(p).name for p in paths)), drops


def ground_truth_from_polarity(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Canonical ground truth from the WVS pipeline's polarity table."""
    df = read_table(path)
    return check_ground_truth(df.select("level", "group", "question_key", "polarity"), path)


def country_languages_from_workflow(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Canonical country → language table from the WVS pipeline."""
    df = read_table(path)
    return check_country_languages(df, path)


def capability_from_general_eval(
    paths: Sequence[str | os.PathLike[str]], *, benchmarks: Sequence[str] = (), scale: float = 1.0
) -> pl.DataFrame:
    """Capability per model × language from the evaluate pipeline's lm_eval metrics (model,
    benchmark, language, value): mean over the benchmarks of each language (all, or those named)
    divided by `scale`. Pooled rows (language 'local' / 'all') are left out."""
    frames = []
    for path in paths:
        df = read_table(path)
        require_columns(df, ("model", "benchmark", "language", "value"), path)
        frames.append(df.select("model", "benchmark", "language", pl.col("value").alias("score")))
    if not frames:
        raise InputError("alignment.capability", "no lm_eval metrics (is eval_models empty?)")
    table = pl.concat(frames).filter(
        pl.col("language").map_elements(is_language_code, return_dtype=pl.Boolean)
    )
    if benchmarks:
        table = table.filter(pl.col("benchmark").is_in(list(benchmarks)))
    if table.height == 0:
        raise InputError(
            ", ".join(str(p) for p in paths),
            f"no lm_eval metric per language{' for benchmarks ' + ', '.join(benchmarks) if benchmarks else ''}",
        )
    return capability_table(table, "lm_eval metrics", scale=scale)


# ----------------------------------------------------------------------------------------------
# Stage inputs, whatever the source
# ----------------------------------------------------------------------------------------------

EMPTY_HUMAN = {"group": pl.String, "consistency": pl.Float64}


@dataclass
class AlignmentInputs:
    """The canonical tables every alignment rule reads."""

    responses: pl.DataFrame
    ground_truth: pl.DataFrame
    country_languages: pl.DataFrame
    human_consistency: pl.DataFrame
    drops: pl.DataFrame


def prepare_inputs(
    *,
    responses_source: str,
    scored_paths: Sequence[str | os.PathLike[str]] = (),
    responses_path: str | os.PathLike[str] | None = None,
    template_type: str | None = "survey_hypothetical",
    ground_truth_source: str,
    polarity_path: str | os.PathLike[str] | None = None,
    country_languages_path: str | os.PathLike[str] | None = None,
    human_consistency_path: str | os.PathLike[str] | None = None,
    country_path: str | os.PathLike[str] | None = None,
    language_path: str | os.PathLike[str] | None = None,
    global_path: str | os.PathLike[str] | None = None,
    use_merged: bool = True,
    countries: Sequence[str] = (),
) -> AlignmentInputs:
    """Read responses and ground truth from the workflow or from released files and check that
    they meet: the responses' topics must have ground truth somewhere.

    `countries` (empty: all) restricts the country-level ground truth, the country → language
    table and the human self-consistency band to those countries (config
    ``alignment.countries``; the paper used the 13 whose main language is da, en, nl or pt);
    a code without ground truth fails naming the key."""
    if responses_source == "workflow":
        responses, drops = responses_from_scored(scored_paths)
        merged = pl.DataFrame(schema=GROUND_TRUTH_SCHEMA)
        r_source: object = ", ".join(Path(p).name for p in scored_paths)
    elif responses_source == "file":
        if responses_path is None:
            raise InputError("alignment.responses.path", "source 'file' needs a response table")
        responses, merged, drops = read_released_responses(responses_path, template_type)
        r_source = responses_path
    else:
        raise InputError("alignment.responses.source", f"unknown source '{responses_source}'")
    if ground_truth_source == "workflow":
        if polarity_path is None or country_languages_path is None:
            raise InputError(
                "alignment.ground_truth",
                "source 'workflow' needs polarity and country_languages tables",
            )
        gt = ground_truth_from_polarity(polarity_path)
        cl = country_languages_from_workflow(country_languages_path)
    elif ground_truth_source == "file":
        gt = read_released_ground_truth(country_path, language_path, global_path)
        cl = (
            read_released_country_languages(country_languages_path)
            if country_languages_path is not None
            else pl.DataFrame(schema={"country": pl.String, "language": pl.String})
        )
    else:
        raise InputError("alignment.ground_truth.source", f"unknown source '{ground_truth_source}'")
    human = (
        read_human_consistency(human_consistency_path)
        if human_consistency_path
        else pl.DataFrame(schema=EMPTY_HUMAN)
    )
    if countries:
        gt, cl, human = restrict_countries(gt, cl, human, countries)
    if use_merged and merged.height:
        gt = check_ground_truth(pl.concat([gt, merged]), "ground truth with the merged values")
    r_topics = set(responses["question_key"].unique().to_list())
    g_topics = set(gt["question_key"].unique().to_list())
    if not r_topics & g_topics:
        raise InputError(
            r_source,
            f"no topic of the responses has ground truth (responses: {', '.join(sorted(r_topics)[:8])}…; "
            f"ground truth: {', '.join(sorted(g_topics)[:8])}…)",
        )
    return AlignmentInputs(responses, gt, cl, human, drops.to_frame())
