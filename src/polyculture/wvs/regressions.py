"""Stage 9: the mixed-effects model of alignment (RQ1) and the OLS model of US-centric bias
(RQ2), each in two observation modes.

RQ1 (paper Eq. 1): alignment of model m in language l ~ consistency + capability × family ×
language, random intercept per model (statsmodels ``mixedlm``; formula from the config).
RQ2 (paper Eq. 2): alignment ~ US × model × language over the alignments of each model ×
language with the US and with the language's local countries (OLS), a uniform-random responder
as the reference model (the released analysis's baseline).

Observation modes (``mode`` column of every output):

- ``replicates`` — as released: each of R bootstrap replicates (responses resampled with
  replacement per model × language) contributes one row per model × language (× group), and the
  regression's model-based standard errors treat the R rows as independent. They are not: the
  rows are resamples of the same responses, so the effective sample is the number of model ×
  language cells, and the standard errors shrink like 1/√R whatever the data say.
- ``cluster_bootstrap`` — sound: one observation per model × language (× group), computed on
  all responses; the point estimate is the fit on these observations; uncertainty comes from
  refitting on B cluster-bootstrap replicates (topics resampled with replacement — the same draw
  for every model and language, each bringing all its responses), giving a percentile interval, a
  bootstrap standard error (z = coef / se) and a two-sided bootstrap p-value.

Coefficient tables: term, coef, std_err, z, p, ci_low, ci_high, mode, family, language, model
(the last three parsed from the term name where it names them).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
import polars as pl
import statsmodels.api as sm
from scipy.stats import norm

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.alignment import (
    AnalysisData,
    Cell,
    ReplicateResult,
    bootstrap_pvalue,
    percentile_interval,
    replicates,
)
from polyculture.wvs.released import RELEASED_LEVELS, released_replicates
from polyculture.wvs.specgrid import (
    GROUND_TRUTH_CHOICES,
    MIXED_FORMULAS,
    MODES,
    RELEASED_MIXED_FORMULA,
)

KINDS = ("mixedlm", "ols")
BASELINE_MODEL = "baseline-uniform"
BASELINE_FAMILY = "baseline"

COEF_COLUMNS = ("term", "coef", "std_err", "z", "p", "ci_low", "ci_high", "mode")
COEF_SCHEMA = {
    "term": pl.String,
    "coef": pl.Float64,
    "std_err": pl.Float64,
    "z": pl.Float64,
    "p": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "mode": pl.String,
}
_TERM_PATTERNS = {
    "family": r"family\[(?:T\.)?([^\]]+)\]",
    "language": r"language\[(?:T\.)?([^\]]+)\]",
    "model": r"model\[(?:T\.)?([^\]]+)\]",
}


# ----------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------


def drop_terms(formula: str, variable: str) -> str:
    """`formula` without the right-hand-side terms that involve `variable` (e.g. the model
    without the consistency covariate)."""
    desc = patsy.ModelDesc.from_formula(formula)
    keep = [t for t in desc.rhs_termlist if not any(variable in f.name() for f in t.factors)]
    return patsy.ModelDesc(desc.lhs_termlist, keep).describe()


@dataclass
class Design:
    """A formula's design, frozen on the observations it was first built from, so that
    bootstrap refits use the same columns and factor levels. Columns that no observation
    informs (all zero, e.g. a model × language without a usable alignment) are left out and
    listed in `dropped`."""

    formula: str
    kind: str
    groups: str | None
    y_info: patsy.DesignInfo
    x_info: patsy.DesignInfo
    columns: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, formula: str, data: pd.DataFrame, kind: str, groups: str | None) -> Design:
        if kind not in KINDS:
            raise ConfigError(
                "kind", f"unknown regression kind '{kind}' (expected {', '.join(KINDS)})"
            )
        try:
            y, x = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="drop")
        except patsy.PatsyError as exc:
            raise ConfigError(
                "formula", f"'{formula}' does not fit the observations: {exc}"
            ) from exc
        empty = [c for c in x.columns if not np.any(np.asarray(x[c]) != 0)]
        kept = [c for c in x.columns if c not in empty]
        if not kept:
            raise NotEstimable(f"no term of '{formula}' is informed by any observation")
        return cls(formula, kind, groups, y.design_info, x.design_info, kept, empty)

    def matrices(self, data: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
        y, x = patsy.build_design_matrices(
            [self.y_info, self.x_info], data, NA_action="drop", return_type="dataframe"
        )
        x = x.loc[:, self.columns]
        g = data.loc[x.index, self.groups].astype(str).to_numpy() if self.groups else None
        return np.asarray(y).ravel(), x, g

    @property
    def response(self) -> str:
        """Name of the dependent variable (for summaries)."""
        return str(self.y_info.column_names[0])


class NotEstimable(InputError):
    """The observations cannot carry the regression (the stage reports why instead of fitting)."""

    def __init__(self, problem: str) -> None:
        super().__init__("regression", problem)
        self.reason = problem


@dataclass
class Fit:
    """Fixed-effect estimates of one fit and its model-based inference."""

    terms: list[str]
    coef: np.ndarray
    std_err: np.ndarray
    stat: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    converged: bool
    n_obs: int
    n_groups: int | None
    summary: str
    group_var: float | None = None
    fitted: np.ndarray | None = None  # per observation used (the x rows' order)
    rows: np.ndarray | None = None  # the positions of those observations in the fitted frame


def fit_design(
    design: Design, data: pd.DataFrame, *, start: np.ndarray | None = None, summary: bool = True
) -> Fit:
    """Fit `design` to `data` (OLS or a linear mixed model with a random intercept per group)."""
    y, x, g = design.matrices(data)
    if y.size == 0:
        raise InputError("regression", "no observations to fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if design.kind == "ols":
            res = sm.OLS(pd.Series(y, index=x.index, name=design.response), x).fit()
            ci = np.asarray(res.conf_int(0.05))
            return Fit(
                design.columns,
                np.asarray(res.params),
                np.asarray(res.bse),
                np.asarray(res.tvalues),
                np.asarray(res.pvalues),
                ci[:, 0],
                ci[:, 1],
                True,
                int(res.nobs),
                None,
                without_clock(str(res.summary(xname=design.columns))) if summary else "",
                None,
                np.asarray(res.fittedvalues),
                data.index.get_indexer(x.index),
            )
        model = sm.MixedLM(pd.Series(y, index=x.index, name=design.response), x, groups=g)
        res = None
        # Gradient methods can hit a singular Hessian when the random-intercept variance runs
        # to its boundary (0: e.g. Eq. 1's fixed intercept absorbs the model means); the
        # derivative-free methods then still find the REML optimum.
        for methods in (["lbfgs", "bfgs", "cg", "powell"], ["powell", "nm"]):
            kwargs: dict[str, object] = {"reml": True, "method": methods}
            if start is not None:
                kwargs["start_params"] = start
            try:
                res = model.fit(**kwargs)
                break
            except np.linalg.LinAlgError:
                continue
        if res is None:
            raise NotEstimable("the mixed model's fit hit a singular matrix with every optimizer")
        k = len(design.columns)
        fe = np.asarray(res.fe_params)
        bse = np.asarray(res.bse_fe) if res.bse_fe is not None else np.full(k, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            zs = fe / bse
        p = 2 * norm.sf(np.abs(zs))
        crit = norm.ppf(0.975)
        converged = bool(res.converged) and bool(np.isfinite(fe).all())
        group_var = float(np.asarray(res.cov_re)[0, 0]) if res.cov_re is not None else None
        text = str(res.summary()) if summary else ""
        return Fit(
            design.columns,
            fe,
            bse,
            zs,
            p,
            fe - crit * bse,
            fe + crit * bse,
            converged,
            int(res.nobs),
            int(len(np.unique(g))) if g is not None else None,
            text,
            group_var,
            _mixed_fitted(res, x),
            data.index.get_indexer(x.index),
        )


def _mixed_fitted(res, x: pd.DataFrame) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Fitted values with the predicted random intercepts; the fixed part alone where the random
    intercept's variance is 0 (statsmodels cannot predict random effects from it: then every
    predicted intercept is 0 anyway)."""
    try:
        return np.asarray(res.fittedvalues)
    except ValueError:
        return np.asarray(x) @ np.asarray(res.fe_params)


def refit_replicates(design: Design, data: pd.DataFrame, rounds: int) -> tuple[np.ndarray, int]:
    """Fixed effects of `design` refitted on each replicate of `data` (column 'replicate',
    0..rounds-1): a rounds × terms array (NaN rows for failed or non-converged fits) and the
    number of such failures. The design matrices of all replicates are built in one pass."""
    boot = np.full((rounds, len(design.columns)), np.nan)
    if data.empty:
        return boot, rounds
    y, x, g = design.matrices(data)
    rep = data.loc[x.index, "replicate"].to_numpy()
    xa = x.to_numpy()
    failed = 0
    for b in range(rounds):
        sel = rep == b
        if not sel.any():
            failed += 1
            continue
        try:
            if design.kind == "ols":
                coef, *_ = np.linalg.lstsq(xa[sel], y[sel], rcond=None)
                boot[b] = coef
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sm.MixedLM(y[sel], x.loc[sel], groups=g[sel]).fit(
                    reml=True, method=["lbfgs", "bfgs", "cg", "powell"]
                )
            if res.converged and np.isfinite(np.asarray(res.fe_params)).all():
                boot[b] = np.asarray(res.fe_params)
            else:
                failed += 1
        except (np.linalg.LinAlgError, ValueError, NotEstimable):
            failed += 1
    return boot, failed


def without_clock(text: str) -> str:
    """A statsmodels summary without its Date and Time cells (same fit → same text)."""
    text = re.sub(r"(Date:\s+)\w{3}, \d{2} \w{3} \d{4}", lambda m: m.group(1) + "-" * 16, text)
    return re.sub(r"(Time:\s+)\d{2}:\d{2}:\d{2}", lambda m: m.group(1) + "-" * 8, text)


def parse_terms(df: pl.DataFrame) -> pl.DataFrame:
    """Add family, language and model columns parsed from patsy term names."""
    return df.with_columns(
        *(pl.col("term").str.extract(pat, 1).alias(name) for name, pat in _TERM_PATTERNS.items())
    )


def with_residuals(obs: pl.DataFrame, fit: Fit) -> pl.DataFrame:
    """`obs` (the frame that was fitted, in its order) with the fit's ``fitted`` values and
    ``residual`` = alignment − fitted (null for rows the fit left out): the residual plots of
    the paper's Fig. 9. Mixed-model fitted values include the estimated random intercepts."""
    fitted = np.full(obs.height, np.nan)
    if fit.fitted is not None and fit.rows is not None and fit.rows.size == fit.fitted.size:
        ok = fit.rows >= 0
        fitted[fit.rows[ok]] = fit.fitted[ok]
    return obs.with_columns(
        pl.Series("fitted", fitted).fill_nan(None),
    ).with_columns((pl.col("alignment") - pl.col("fitted")).alias("residual"))


def coefficient_frame(fit: Fit, mode: str) -> pl.DataFrame:
    """Model-based coefficient table of one fit."""
    return parse_terms(
        pl.DataFrame(
            {
                "term": fit.terms,
                "coef": fit.coef,
                "std_err": fit.std_err,
                "z": fit.stat,
                "p": fit.p,
                "ci_low": fit.ci_low,
                "ci_high": fit.ci_high,
                "mode": mode,
            },
            schema=COEF_SCHEMA,
        )
    )


def bootstrap_frame(point: Fit, boot: np.ndarray, mode: str, alpha: float = 0.05) -> pl.DataFrame:
    """Coefficient table of a point fit with cluster-bootstrap inference (`boot`: B × terms)."""
    rows = []
    for j, term in enumerate(point.terms):
        low, high, sd, _ = percentile_interval(boot[:, j], alpha)
        coef = float(point.coef[j])
        z = coef / sd if sd and np.isfinite(sd) and sd > 0 else float("nan")
        rows.append(
            {
                "term": term,
                "coef": coef,
                "std_err": sd,
                "z": z,
                "p": bootstrap_pvalue(boot[:, j] - 0.0),
                "ci_low": low,
                "ci_high": high,
                "mode": mode,
            }
        )
    return parse_terms(pl.DataFrame(rows, schema=COEF_SCHEMA))


# ----------------------------------------------------------------------------------------------
# One regression in both modes
# ----------------------------------------------------------------------------------------------


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


@dataclass
class ModeResult:
    """Coefficients, the observations used, and a note of how they were formed."""

    mode: str
    coefficients: pl.DataFrame
    observations: pl.DataFrame
    note: str
    info: dict[str, object]
    summary: str


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


def _fit_observations(
    spec: RegressionSpec, obs: pl.DataFrame, models: Sequence[str]
) -> tuple[Design, Fit]:
    """The design of `spec`'s regression on the observations `obs`, and its fit."""
    pdf = _pandas(obs, spec, models)
    design = Design.build(
        spec.formula, pdf, spec.kind, spec.groups if spec.kind == "mixedlm" else None
    )
    return design, fit_design(design, pdf)


def released_join_level(spec: RegressionSpec, resample_size: int | None) -> str | None:
    """The ground-truth level whose joined table the released analysis resampled for this
    regression, or None where the released draw does not apply (the sound pairing, a resample
    size other than the whole table, the topic unit, or the merged ground truth, which the
    released regressions never joined to)."""
    if spec.consistency_pairs != "released" or resample_size is not None or spec.unit != "response":
        return None
    level = "country" if spec.name == "us_bias" else spec.ground_truth
    return level if level in RELEASED_LEVELS else None


def run_replicates_mode(
    spec: RegressionSpec,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    *,
    rounds: int,
    resample_size: int | None,
    seed: int,
    rep: ReplicateResult | None = None,
) -> ModeResult:
    """As released: R replicate rows per cell, one fit, model-based inference."""
    if rounds < 2:
        raise ConfigError("rounds", "the replicates mode needs at least 2 rounds")
    joined = released_join_level(spec, resample_size) if rep is None else None
    if rep is None and joined is not None:
        rep = released_replicates(data, joined, rounds, seed, consistency=uses_consistency(spec))
    elif rep is None:
        rep = replicates(
            data,
            "responses",
            rounds,
            seed,
            resample_size=resample_size,
            units=(spec.unit,),
            levels=needed_levels(spec),
            include_observed=False,
            consistency=uses_consistency(spec),
        )
    column = "consistency_released" if spec.consistency_pairs == "released" else "consistency"
    obs = _observations(spec, rep, data, capability, column).filter(pl.col("replicate") >= 0)
    obs = usable_rows(obs, spec)
    design, fit = _fit_observations(spec, obs, sorted({c.model for c in data.cells}))
    n_cells = obs.select("model", "language").unique().height
    drawn = (
        f"rows of the table of responses joined to every '{joined}' ground-truth group drawn "
        "with replacement, all cells together, as many as it has — the released draw"
        if joined is not None
        else f"responses resampled with replacement per model × language, "
        f"{resample_size or 'as many as observed'} per replicate"
    )
    note = (
        f"replicates mode (as released): {rounds} bootstrap replicates ({drawn}) × "
        f"{n_cells} model × language cells = {fit.n_obs} rows, treated as independent observations; "
        f"consistency {'as released (Spearman over pairs of joined rows, copies and duplicates paired, divided by 1 - 0.045)' if column == 'consistency_released' else 'from distinct-response pairs'}. "
        f"Model-based standard errors shrink like 1/sqrt(rounds): read the p-values as an artefact."
    )
    info = {
        "dropped_terms": design.dropped,
        "mode": "replicates",
        "formula": spec.formula,
        "kind": spec.kind,
        "n_obs": fit.n_obs,
        "n_cells": n_cells,
        "n_groups": fit.n_groups,
        "converged": fit.converged,
        "rounds": rounds,
        "resample_size": resample_size,
        "group_var": fit.group_var,
        "note": note,
    }
    return ModeResult(
        "replicates",
        coefficient_frame(fit, "replicates"),
        with_residuals(obs, fit).with_columns(pl.lit("replicates").alias("mode")),
        note,
        info,
        fit.summary,
    )


def run_cluster_mode(
    spec: RegressionSpec,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    *,
    rounds: int,
    seed: int,
    rep: ReplicateResult | None = None,
    alpha: float = 0.05,
) -> ModeResult:
    """Sound: one observation per cell; cluster bootstrap over topics for the uncertainty."""
    if rounds < 2:
        raise ConfigError("cluster_rounds", "the cluster bootstrap needs at least 2 rounds")
    if rep is None:
        rep = replicates(
            data,
            "cluster",
            rounds,
            seed,
            units=(spec.unit,),
            levels=needed_levels(spec),
            released_level=None,
            consistency=uses_consistency(spec),
        )
    obs_all = usable_rows(_observations(spec, rep, data, capability, "consistency"), spec)
    models = sorted({c.model for c in data.cells})
    point_obs = obs_all.filter(pl.col("replicate") == -1)
    design, point = _fit_observations(spec, point_obs, models)
    boot, failed = refit_replicates(
        design, _pandas(obs_all.filter(pl.col("replicate") >= 0), spec, models), rounds
    )
    n_cells = (
        point_obs.height
        if spec.name == "mixed_model"
        else point_obs.select("model", "language").unique().height
    )
    note = (
        f"cluster_bootstrap mode: one observation per model × language"
        f"{' × country' if spec.name == 'us_bias' else ''} from all responses ({point.n_obs} rows, "
        f"{n_cells} model × language cells); estimates from that fit; uncertainty from refitting on "
        f"{rounds} cluster-bootstrap replicates (topics resampled with replacement, the same draw for "
        f"every model and language; {failed} refits failed or did "
        f"not converge and were left out); percentile {100 * (1 - alpha):.0f}% intervals, "
        f"bootstrap standard errors, two-sided bootstrap p-values."
    )
    info = {
        "dropped_terms": design.dropped,
        "mode": "cluster_bootstrap",
        "formula": spec.formula,
        "kind": spec.kind,
        "n_obs": point.n_obs,
        "n_cells": n_cells,
        "n_groups": point.n_groups,
        "converged": point.converged,
        "rounds": rounds,
        "n_boot_failed": failed,
        "group_var": point.group_var,
        "note": note,
    }
    coefs = bootstrap_frame(point, boot, "cluster_bootstrap", alpha)
    return ModeResult(
        "cluster_bootstrap",
        coefs,
        with_residuals(point_obs, point).with_columns(pl.lit("cluster_bootstrap").alias("mode")),
        note,
        info,
        point.summary,
    )


def run_regression(
    spec: RegressionSpec,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    *,
    modes: Sequence[str] = MODES,
    rounds: int = 100,
    resample_size: int | None = None,
    cluster_rounds: int = 200,
    seed: int = 0,
) -> list[ModeResult]:
    """Fit one regression in each requested mode."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(
            "modes", f"unknown observation mode(s) {unknown} (expected {', '.join(MODES)})"
        )
    if spec.name == "us_bias" and not any(c.model == BASELINE_MODEL for c in data.cells):
        data = add_uniform_baseline(data, seed + 17)
    out = []
    for mode in modes:
        if mode == "replicates":
            out.append(
                run_replicates_mode(
                    spec, data, capability, rounds=rounds, resample_size=resample_size, seed=seed
                )
            )
        else:
            out.append(
                run_cluster_mode(spec, data, capability, rounds=cluster_rounds, seed=seed + 1)
            )
    return out


def summary_text(
    spec: RegressionSpec, results: Sequence[ModeResult], extra: Sequence[str] = ()
) -> str:
    """Plain-text report: how observations were formed, per mode, and each fit's summary."""
    lines = [f"{spec.name}: {spec.formula} ({spec.kind}); alignment unit '{spec.unit}'"]
    if spec.name == "mixed_model":
        lines.append(released_formula_note(spec.formula_name))
        grouping = f"; random intercept per {spec.groups}" if spec.kind == "mixedlm" else ""
        lines.append(f"ground truth: {spec.ground_truth}{grouping}")
    lines += list(extra)
    for r in results:
        lines += ["", "=" * 100, f"mode: {r.mode}", r.note, ""]
        if r.info.get("dropped_terms"):
            lines.append(
                f"terms without any observation (left out): {', '.join(r.info['dropped_terms'])}"
            )
        lines.append(r.summary)
        if r.mode == "cluster_bootstrap":
            lines.append("cluster-bootstrap inference (replaces the model-based columns above):")
            with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=80):
                lines.append(str(r.coefficients.select(COEF_COLUMNS[:-1])))
    return "\n".join(lines) + "\n"


def released_formula_note(name: str) -> str:
    """One line naming the fitted formula and the one whose fit the released code published."""
    rel = MIXED_FORMULAS[RELEASED_MIXED_FORMULA]
    return (
        f"formula '{name}'. The released code published the fit of '{RELEASED_MIXED_FORMULA}' "
        f"({rel}; scripts/plot_multilingual_benchmarks.py, default --regression-type interaction, "
        "run by scripts/reproduce_plots.sh); the paper's Eq. 1 ('eq1') has a fixed intercept and "
        "one consistency slope."
    )


def is_significant(p: float, alpha: float = 0.05) -> bool:
    """p < alpha for a finite p."""
    return math.isfinite(p) and p < alpha


def term_regex(pattern: str) -> re.Pattern[str]:
    """Compile a key-term pattern, failing with the config key on bad syntax."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            "speccurve.key_terms", f"'{pattern}' is not a regular expression: {exc}"
        ) from exc


# ----------------------------------------------------------------------------------------------
# The stage: both modes, or a stated reason why the data cannot carry the model
# ----------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """What the mixed_model / us_bias rule writes."""

    coefficients: pl.DataFrame
    observations: pl.DataFrame
    summary: str
    fit: dict[str, object]


def not_estimable_reason(
    spec: RegressionSpec, data: AnalysisData, capability: pl.DataFrame | None
) -> str | None:
    """Why the data cannot carry the regression (None when it can): too few models or cells,
    no capability for any cell, or no US / local-country ground truth."""
    models = {c.model for c in data.cells if c.family != BASELINE_FAMILY}
    if spec.name == "mixed_model":
        if capability is None or capability.height == 0:
            return "no capability table"
        have = set(
            zip(capability["model"].to_list(), capability["language"].to_list(), strict=True)
        )
        cells = [c for c in data.cells if (c.model, c.language) in have]
        if spec.kind == "mixedlm" and len({c.model for c in cells}) < 2:
            return (
                f"the mixed model needs at least 2 models with capability (random intercept per model); "
                f"models with capability: {', '.join(sorted({c.model for c in cells})) or 'none'} "
                f"of {', '.join(sorted(models))}"
            )
        if len(cells) < 3:
            return f"only {len(cells)} model × language cell(s) have capability"
        return None
    if ("country", spec.us_group) not in data.ground_truth:
        return f"no ground truth for the US (country '{spec.us_group}')"
    if not any(data.local_countries(c.language) for c in data.cells):
        return "no language of the responses has a local country with ground truth"
    return None


def regression_stage(
    spec: RegressionSpec,
    data: AnalysisData,
    capability: pl.DataFrame | None,
    *,
    modes: Sequence[str],
    rounds: int,
    resample_size: int | None,
    cluster_rounds: int,
    seed: int,
) -> StageResult:
    """Fit the regression in every mode, or report why it cannot be fitted (empty coefficient
    table, the reason in the summary and fit record)."""
    reason = not_estimable_reason(spec, data, capability)
    results: list[ModeResult] = []
    if reason is None:
        try:
            results = run_regression(
                spec,
                data,
                capability,
                modes=modes,
                rounds=rounds,
                resample_size=resample_size,
                cluster_rounds=cluster_rounds,
                seed=seed,
            )
        except NotEstimable as exc:
            reason = exc.reason
    if reason is not None:
        empty = parse_terms(pl.DataFrame(schema=COEF_SCHEMA))
        summary = f"{spec.name}: {spec.formula} ({spec.kind})\nNOT ESTIMABLE: {reason}\n"
        return StageResult(
            empty, pl.DataFrame(), summary, {"estimable": False, "reason": reason, "modes": {}}
        )
    extra = []
    if spec.name == "mixed_model" and capability is not None:
        point = next(
            (r.observations for r in results if r.mode == "cluster_bootstrap"),
            results[0].observations,
        )
        missing = missing_cells(data, point)
        if missing:
            extra.append(f"cells left out (no capability or no ground truth): {', '.join(missing)}")
    if spec.name == "us_bias":
        extra.append(
            f"reference model: {BASELINE_MODEL} (uniform-random polarities, seeded), as in the released analysis"
        )
    coefs = pl.concat([r.coefficients for r in results])
    obs = pl.concat([r.observations for r in results], how="diagonal_relaxed")
    fit = {
        "estimable": True,
        "reason": None,
        "formula_name": spec.formula_name,
        "released_formula": RELEASED_MIXED_FORMULA if spec.name == "mixed_model" else None,
        "modes": {r.mode: r.info for r in results},
    }
    return StageResult(coefs, obs, summary_text(spec, results, extra), fit)
