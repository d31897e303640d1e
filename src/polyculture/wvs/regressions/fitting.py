"""Fitting one regression design (statsmodels mixedlm or OLS) and its coefficient tables: terms
parsed into family, language and model, and cluster-bootstrap refits."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
import polars as pl
import statsmodels.api as sm
from scipy.stats import norm

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.alignment import (
    bootstrap_pvalue,
    percentile_interval,
)

KINDS = ("mixedlm", "ols")


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
