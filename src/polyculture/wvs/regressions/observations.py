"""The observations of the stage-9 regressions: model x language cells for RQ1 (mixed) and RQ2
(US-centric), the uniform-random baseline, and the rows a specification can use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy
import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.alignment import (
    AnalysisData,
    Cell,
    ReplicateResult,
)
from polyculture.wvs.regressions.fitting import NotEstimable
from polyculture.wvs.released import RELEASED_LEVELS
from polyculture.wvs.specgrid import (
    GROUND_TRUTH_CHOICES,
)

BASELINE_MODEL = "baseline-uniform"


BASELINE_FAMILY = "baseline"


def add_uniform_baseline(data: AnalysisData, seed: int, name: str = BASELINE_MODEL) -> AnalysisData:
    """A copy of `data` with a uniform-random responder added in every language: the topic
    structure of the first model (by name) in that language, polarities drawn from U(0, 1)
    (seeded). The released US-bias regression uses such a responder as its reference model."""
    rng = np.random.default_rng(seed)
    extra: list[Cell] = []
    for language in sorted({c.language for c in data.cells}):
        template = min((c for c in data.cells if c.language == language), key=lambda c: c.model)
        extra.append(
            Cell(
                name,
                BASELINE_FAMILY,
                language,
                template.topic,
                rng.random(template.n),
                template.counts,
                template.starts,
            )
        )
    return AnalysisData(
        data.topics, [*data.cells, *extra], data.ground_truth, data.country_languages
    )


def _check_unit(unit: str) -> None:
    if unit not in ("topic", "response"):
        raise ConfigError(
            "alignment.unit", f"unknown alignment unit '{unit}' (expected topic or response)"
        )


def mixed_observations(
    rep: ReplicateResult,
    data: AnalysisData,
    capability: pl.DataFrame,
    *,
    ground_truth: str,
    unit: str,
    consistency_column: str = "consistency",
) -> pl.DataFrame:
    """Rows (replicate, model, family, language, alignment, consistency, capability) for RQ1.

    `ground_truth` picks the population a model × language is compared with: 'language' (all
    speakers of the language), 'country' (mean alignment over the language's local countries),
    'merged' (the released per-response ground truth), 'global'. Cells without capability or
    without the chosen ground truth are left out (see :func:`missing_cells`)."""
    _check_unit(unit)
    if ground_truth not in GROUND_TRUTH_CHOICES:
        raise ConfigError(
            "mixed_model.ground_truth",
            f"unknown ground truth '{ground_truth}' (expected one of {', '.join(GROUND_TRUTH_CHOICES)})",
        )
    al = rep.alignment.filter(pl.col("unit") == unit)
    if ground_truth in ("language", "merged"):
        al = al.filter((pl.col("level") == ground_truth) & (pl.col("group") == pl.col("language")))
    elif ground_truth == "global":
        al = al.filter(pl.col("level") == "global")
    else:
        local = pl.DataFrame(
            [(c, lang) for c, lang in data.country_languages.items()],
            schema={"group": pl.String, "language": pl.String},
            orient="row",
        )
        al = al.filter(pl.col("level") == "country").join(
            local, on=["group", "language"], how="semi"
        )
    obs = al.group_by(["replicate", "model", "family", "language"]).agg(pl.col("alignment").mean())
    cons = rep.consistency.select(
        "replicate", "model", "language", pl.col(consistency_column).alias("consistency")
    )
    return (
        obs.join(cons, on=["replicate", "model", "language"], how="inner")
        .join(
            capability.select("model", "language", "capability"),
            on=["model", "language"],
            how="inner",
        )
        .select(
            "replicate", "model", "family", "language", "alignment", "consistency", "capability"
        )
        .sort("replicate", "model", "language")
    )


def us_observations(
    rep: ReplicateResult, data: AnalysisData, *, unit: str, us_group: str = "US"
) -> pl.DataFrame:
    """Rows (replicate, model, family, language, group, us, alignment) for RQ2: alignment of each
    model × language with the US and with each of the language's local countries (for English,
    the US is local: its rows have us = true, the other English-speaking countries false)."""
    _check_unit(unit)
    rows = []
    for language in sorted({c.language for c in data.cells}):
        groups = set(data.local_countries(language))
        if ("country", us_group) in data.ground_truth:
            groups.add(us_group)
        rows += [(language, g) for g in sorted(groups)]
    wanted = pl.DataFrame(rows, schema={"language": pl.String, "group": pl.String}, orient="row")
    return (
        rep.alignment.filter((pl.col("unit") == unit) & (pl.col("level") == "country"))
        .join(wanted, on=["language", "group"], how="semi")
        .with_columns((pl.col("group") == us_group).alias("us"))
        .select("replicate", "model", "family", "language", "group", "us", "alignment")
        .sort("replicate", "model", "language", "group")
    )


def missing_cells(data: AnalysisData, obs: pl.DataFrame) -> list[str]:
    """Model × language cells of the data that have no observation (e.g. no capability)."""
    have = set(zip(obs["model"].to_list(), obs["language"].to_list(), strict=True))
    return sorted(
        f"{c.model}/{c.language}"
        for c in data.cells
        if (c.model, c.language) not in have and c.family != BASELINE_FAMILY
    )


def drop_terms(formula: str, variable: str) -> str:
    """`formula` without the right-hand-side terms that involve `variable` (e.g. the model
    without the consistency covariate)."""
    desc = patsy.ModelDesc.from_formula(formula)
    keep = [t for t in desc.rhs_termlist if not any(variable in f.name() for f in t.factors)]
    return patsy.ModelDesc(desc.lhs_termlist, keep).describe()


@dataclass(frozen=True)
class RegressionSpec:
    """What to fit and how observations are formed."""

    name: str  # 'mixed_model' or 'us_bias'
    formula: str
    kind: str  # mixedlm | ols
    unit: str = "topic"
    ground_truth: str = "language"  # RQ1 only
    groups: str | None = "model"  # random intercept grouping (mixedlm)
    consistency_pairs: str = "released"  # replicates mode: released | distinct
    us_group: str = "US"
    formula_name: str = "custom"  # a name of specgrid.MIXED_FORMULAS, 'us_bias' or 'custom'


def _observations(
    spec: RegressionSpec,
    rep: ReplicateResult,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    consistency_column: str,
) -> pl.DataFrame:
    obs = _raw_observations(spec, rep, data, capability, consistency_column)
    usable = usable_rows(obs, spec)
    models = set(usable.filter(pl.col("model") != BASELINE_MODEL)["model"].to_list())
    if not models:
        raise NotEstimable("no model has a usable alignment (too few topics with ground truth?)")
    if spec.kind == "mixedlm" and len(models) < 2:
        raise NotEstimable(
            f"the mixed model needs at least 2 models with usable observations, has {sorted(models)}"
        )
    return obs


def _raw_observations(
    spec: RegressionSpec,
    rep: ReplicateResult,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    consistency_column: str,
) -> pl.DataFrame:
    if spec.name == "mixed_model":
        if capability is None:
            raise InputError("capability", "the mixed model needs a capability table")
        return mixed_observations(
            rep,
            data,
            capability,
            ground_truth=spec.ground_truth,
            unit=spec.unit,
            consistency_column=consistency_column,
        )
    return us_observations(rep, data, unit=spec.unit, us_group=spec.us_group)


def needed_levels(spec: RegressionSpec) -> tuple[str, ...]:
    """Ground-truth levels a regression's observations come from."""
    if spec.name == "us_bias":
        return ("country",)
    return (spec.ground_truth,)


def usable_rows(obs: pl.DataFrame, spec: RegressionSpec) -> pl.DataFrame:
    """Observations whose alignment (and consistency, where the formula uses it) is a number
    (a degenerate resample — a constant polarity vector — has no correlation)."""
    cols = ["alignment", *(["consistency"] if uses_consistency(spec) else [])]
    return obs.filter(*(pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in cols))


def uses_consistency(spec: RegressionSpec) -> bool:
    """Whether the regression's formula uses the consistency covariate."""
    return spec.name == "mixed_model" and "consistency" in spec.formula


def _pandas(obs: pl.DataFrame, spec: RegressionSpec, models: Sequence[str]) -> pd.DataFrame:
    df = obs.to_pandas()
    if spec.name == "us_bias":
        # The uniform-random responder is the reference level of `model` (the intercept).
        order = [BASELINE_MODEL, *sorted(m for m in models if m != BASELINE_MODEL)]
        df["model"] = pd.Categorical(df["model"], categories=order)
    return df


def released_join_level(spec: RegressionSpec, resample_size: int | None) -> str | None:
    """The ground-truth level whose joined table the released analysis resampled for this
    regression, or None where the released draw does not apply (the sound pairing, a resample
    size other than the whole table, the topic unit, or the merged ground truth, which the
    released regressions never joined to)."""
    if spec.consistency_pairs != "released" or resample_size is not None or spec.unit != "response":
        return None
    level = "country" if spec.name == "us_bias" else spec.ground_truth
    return level if level in RELEASED_LEVELS else None
