"""The replication report: every published regression term of Rystrøm, Kirk and Hale (2025)
beside the coefficient the project reproduces under each analysis variant, with sign agreement.

The paper gives its regressions as figures (Fig. 1, Fig. 5) and refers to the repository for the
full tables (Appendix D): jhrystrom/multicultural-alignment @ f550348,
``supplementary/regressions/multilingual_regression_results_interaction.txt`` (RQ1: the mixed
model ``0 + consistency:language + multilingual:family:language``, 3,600 bootstrap rows) and
``us_centric_bias_regression_results_normal.txt`` (RQ2: OLS ``us*model_name:language``,
16,000 rows). ``resources/alignment/published_rystrom2025.csv`` holds their fixed-effect rows
as published (facts); this module matches them to the project's term names.

Variants: the mixed_model / us_bias rules' fits (one per observation mode, under the
configured formula) and every specification of the specification curve (formula, ground truth,
unit, observation mode, resample size, consistency, outcome).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import polars as pl

from polyculture.errors import InputError
from polyculture.io import read_table

PUBLISHED_COLUMNS = ("regression", "published_term", "coef", "std_err", "p")
#: language names of the released tables → the project's ISO 639-1 codes
LANGUAGE_NAMES = {"Danish": "da", "Dutch": "nl", "English": "en", "Portuguese": "pt"}

REPORT_SCHEMA = {
    "regression": pl.String,
    "term": pl.String,
    "published_term": pl.String,
    "published_coef": pl.Float64,
    "published_p": pl.Float64,
    "variant": pl.String,
    "coef": pl.Float64,
    "p": pl.Float64,
    "found": pl.Boolean,
    "same_sign": pl.Boolean,
    "same_significance": pl.Boolean,
}


def normalise_term(term: str) -> str:
    """A regression term in one spelling for the released and the project's tables: treatment
    markers ('T.') dropped, ``model_name`` → ``model``, ``multilingual`` → ``capability``,
    language names → codes."""
    t = term.replace("[T.", "[")
    t = re.sub(r"\bmodel_name\[", "model[", t)
    t = re.sub(r"\bmultilingual\b", "capability", t)
    for name, code in LANGUAGE_NAMES.items():
        t = t.replace(f"language[{name}]", f"language[{code}]")
    return t


def read_published(path: str | os.PathLike[str]) -> pl.DataFrame:
    """The published terms (regression, published_term, coef, std_err, p, …) with ``term``, the
    normalised name."""
    df = read_table(path)
    missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}")
    bad = df.filter(~pl.col("regression").is_in(["mixed_model", "us_bias"]))
    if bad.height:
        raise InputError(path, f"unknown regression '{bad['regression'][0]}'")
    return df.with_columns(
        pl.col("coef").cast(pl.Float64),
        pl.col("p").cast(pl.Float64),
        pl.col("published_term").map_elements(normalise_term, return_dtype=pl.String).alias("term"),
    )


def speccurve_variants(table: pl.DataFrame) -> pl.DataFrame:
    """Speccurve rows as (regression, variant, term, coef, p): one variant per specification,
    labelled by its choices."""
    if table.height == 0:
        return pl.DataFrame(
            schema={
                "regression": pl.String,
                "variant": pl.String,
                "term": pl.String,
                "coef": pl.Float64,
                "p": pl.Float64,
            }
        )
    label = pl.format(
        "speccurve {}: formula={} ground_truth={} unit={} observation={} size={} rounds={} "
        "consistency={} outcome={}",
        pl.col("spec_id"),
        pl.col("formula"),
        pl.col("ground_truth"),
        pl.col("unit"),
        pl.col("observation"),
        pl.col("resample_size").cast(pl.String).fill_null("all"),
        pl.col("rounds"),
        pl.col("consistency"),
        pl.col("outcome"),
    )
    return table.select("regression", label.alias("variant"), "term", "coef", "p")


def rule_variants(coefficients: pl.DataFrame, regression: str, formula_name: str) -> pl.DataFrame:
    """A mixed_model / us_bias rule's coefficient table as variants (one per observation mode)."""
    return coefficients.select(
        pl.lit(regression).alias("regression"),
        pl.format(
            "{} rule: formula={} observation={}", pl.lit(regression), pl.lit(formula_name), "mode"
        ).alias("variant"),
        "term",
        "coef",
        "p",
    )


def replication_table(
    published: pl.DataFrame, variants: Sequence[pl.DataFrame], alpha: float = 0.05
) -> pl.DataFrame:
    """Every published term × every variant of its regression: the published and the reproduced
    coefficient, whether the variant has the term at all, sign agreement and agreement on
    significance at `alpha` (columns: REPORT_SCHEMA)."""
    rep = pl.concat(
        [v.select("regression", "variant", "term", "coef", "p") for v in variants if v.height]
        or [
            pl.DataFrame(
                schema={k: REPORT_SCHEMA[k] for k in ("regression", "variant", "term", "coef", "p")}
            )
        ]
    ).with_columns(pl.col("term").map_elements(normalise_term, return_dtype=pl.String))
    names = rep.select("regression", "variant").unique()
    grid = published.select(
        "regression",
        "term",
        "published_term",
        pl.col("coef").alias("published_coef"),
        pl.col("p").alias("published_p"),
    ).join(names, on="regression", how="inner")
    out = grid.join(rep, on=["regression", "variant", "term"], how="left")
    return (
        out.with_columns(
            pl.col("coef").is_not_null().alias("found"),
            pl.when(pl.col("coef").is_not_null())
            .then(pl.col("coef").sign() == pl.col("published_coef").sign())
            .alias("same_sign"),
            pl.when(pl.col("p").is_not_null() & pl.col("p").is_not_nan())
            .then((pl.col("p") < alpha) == (pl.col("published_p") < alpha))
            .alias("same_significance"),
        )
        .select(list(REPORT_SCHEMA))
        .cast(REPORT_SCHEMA)
        .sort("regression", "variant", "term")
    )


def replication_summary(report: pl.DataFrame) -> pl.DataFrame:
    """Per regression × variant: published terms, terms found, share with the published sign and
    with the published significance (over the terms found)."""
    return (
        report.group_by("regression", "variant")
        .agg(
            pl.len().alias("n_published"),
            pl.col("found").sum().alias("n_found"),
            pl.col("same_sign").mean().alias("share_same_sign"),
            pl.col("same_significance").mean().alias("share_same_significance"),
        )
        .sort("regression", "variant")
    )
