"""The stage-9 regressions in both observation modes (replicates as released, cluster bootstrap)
and the stage's outputs and summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from polyculture.errors import ConfigError
from polyculture.wvs.alignment import (
    AnalysisData,
    ReplicateResult,
    replicates,
)
from polyculture.wvs.regressions.fitting import (
    COEF_COLUMNS,
    COEF_SCHEMA,
    Design,
    Fit,
    NotEstimable,
    bootstrap_frame,
    coefficient_frame,
    fit_design,
    parse_terms,
    refit_replicates,
    with_residuals,
)
from polyculture.wvs.regressions.observations import (
    BASELINE_FAMILY,
    BASELINE_MODEL,
    RegressionSpec,
    _observations,
    _pandas,
    add_uniform_baseline,
    missing_cells,
    needed_levels,
    released_join_level,
    usable_rows,
    uses_consistency,
)
from polyculture.wvs.released import released_replicates
from polyculture.wvs.specgrid import (
    MIXED_FORMULAS,
    MODES,
    RELEASED_MIXED_FORMULA,
)


@dataclass
class ModeResult:
    """Coefficients, the observations used, and a note of how they were formed."""

    mode: str
    coefficients: pl.DataFrame
    observations: pl.DataFrame
    note: str
    info: dict[str, object]
    summary: str


def _fit_observations(
    spec: RegressionSpec, obs: pl.DataFrame, models: Sequence[str]
) -> tuple[Design, Fit]:
    """The design of `spec`'s regression on the observations `obs`, and its fit."""
    pdf = _pandas(obs, spec, models)
    design = Design.build(
        spec.formula, pdf, spec.kind, spec.groups if spec.kind == "mixedlm" else None
    )
    return design, fit_design(design, pdf)


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
