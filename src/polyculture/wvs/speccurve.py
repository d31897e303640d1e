"""Robustness of the WVS regressions: a specification curve over analysis choices.

Every specification refits the mixed model (RQ1) or the US-bias model (RQ2) under one
combination of choices:

- ``ground_truth``: the population of RQ1 (language, country — mean over the language's local
  countries —, merged — the released per-response values where the input has them —, global);
  RQ2 always compares countries.
- ``unit``: alignment per topic (the paper) or per response (the released code).
- ``observation``: ``replicates`` (bootstrap replicates as observations, as released; with a
  resample size and a number of rounds) or ``cluster_bootstrap`` (one observation per model ×
  language, uncertainty from a cluster bootstrap over topics).
- ``consistency``: RQ1 with or without the consistency covariate.

The output is a tidy table — the choices, the term, its estimate, interval, p-value, sign and
significance — and, per term, the share of specifications that agree in sign with the default
specification and the share that are significant (overall and per observation unit: the
replicate unit makes nearly everything significant, which is the point of the figure).

:func:`simulate_study` draws synthetic responses with a known capability effect (or none), for
checking that the curve recovers an effect and that the cluster-bootstrap unit keeps the
nominal false-positive rate where the replicate unit does not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.alignment import (
    GROUND_TRUTH_SCHEMA,
    RESPONSE_SCHEMA,
    AnalysisData,
    ReplicateResult,
    replicates,
)
from polyculture.wvs.distribution import distribution_replicates
from polyculture.wvs.regressions import (
    BASELINE_MODEL,
    ModeResult,
    NotEstimable,
    RegressionSpec,
    add_uniform_baseline,
    drop_terms,
    needed_levels,
    not_estimable_reason,
    released_join_level,
    run_cluster_mode,
    run_replicates_mode,
    term_regex,
    uses_consistency,
)
from polyculture.wvs.released import released_replicates
from polyculture.wvs.specgrid import (  # noqa: F401 (expand_grid, grid_size_message: public here too)
    MIXED_FORMULAS,
    REGRESSIONS,
    Spec,
    expand_grid,
    grid_size_message,
    resolve_mixed_formula,
)

SPEC_SCHEMA = {
    "regression": pl.String,
    "spec_id": pl.Int64,
    "ground_truth": pl.String,
    "unit": pl.String,
    "observation": pl.String,
    "resample_size": pl.Int64,
    "rounds": pl.Int64,
    "consistency": pl.Boolean,
    "formula": pl.String,
    "outcome": pl.String,
    "is_default": pl.Boolean,
}


TABLE_SCHEMA = {
    **SPEC_SCHEMA,
    "term": pl.String,
    "coef": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "std_err": pl.Float64,
    "p": pl.Float64,
    "sign": pl.Int64,
    "significant": pl.Boolean,
    "converged": pl.Boolean,
    "n_obs": pl.Int64,
}


@dataclass(frozen=True)
class Defaults:
    """The main analysis's choices (the reference for 'same sign as the default')."""

    mixed_formula: str
    us_formula: str
    ground_truth: str = "language"
    unit: str = "topic"
    observation: str = "cluster_bootstrap"
    mixed_kind: str = "mixedlm"
    consistency_pairs: str = "released"
    us_group: str = "US"


def is_default(spec: Spec, defaults: Defaults, first_rounds: int, first_size: int | None) -> bool:
    """Whether `spec` is the main analysis's specification."""
    default_formula = resolve_mixed_formula(defaults.mixed_formula)[0]
    return (
        spec.unit == defaults.unit
        and spec.formula in ("default", default_formula)
        and spec.outcome == "spearman"
        and spec.observation == defaults.observation
        and spec.consistency
        and (spec.regression == "us_bias" or spec.ground_truth == defaults.ground_truth)
        and (
            spec.observation == "cluster_bootstrap"
            or (spec.rounds == first_rounds and spec.resample_size == first_size)
        )
    )


def _regression_spec(spec: Spec, defaults: Defaults) -> RegressionSpec:
    if spec.regression == "mixed_model":
        base = (
            resolve_mixed_formula(defaults.mixed_formula)[1]
            if spec.formula == "default"
            else MIXED_FORMULAS[spec.formula]
        )
        formula = base if spec.consistency else drop_terms(base, "consistency")
        return RegressionSpec(
            "mixed_model",
            formula,
            defaults.mixed_kind,
            unit=spec.unit,
            ground_truth=spec.ground_truth,
            groups="model",
            consistency_pairs=defaults.consistency_pairs,
        )
    return RegressionSpec(
        "us_bias",
        defaults.us_formula,
        "ols",
        unit=spec.unit,
        groups=None,
        us_group=defaults.us_group,
    )


def run_speccurve(
    data: AnalysisData,
    capability: pl.DataFrame | None,
    specs: Sequence[Spec],
    defaults: Defaults,
    *,
    seed: int,
    alpha: float = 0.05,
    log: object = None,
) -> pl.DataFrame:
    """Fit every specification; return the tidy table (one row per specification × term):
    regression, spec_id, the choices, is_default, term, coef, ci_low, ci_high, std_err, p,
    sign, significant, converged, n_obs.

    Bootstrap replicates are computed once per (scheme, resample size, rounds) and shared by
    the specifications that use them, so choices are compared on the same draws."""
    needs_baseline = any(s.regression == "us_bias" for s in specs)
    data_us = add_uniform_baseline(data, seed + 17) if needs_baseline else data
    cache: dict[tuple[str, str, int | None, int], ReplicateResult] = {}
    ocache: dict[tuple[str, str, int | None, int, str], ReplicateResult] = {}
    first_rounds = min((s.rounds for s in specs if s.observation == "replicates"), default=0)
    first_size = next((s.resample_size for s in specs if s.observation == "replicates"), None)
    units = sorted({s.unit for s in specs})
    levels = sorted({lvl for s in specs for lvl in needed_levels(_regression_spec(s, defaults))})
    with_consistency = any(uses_consistency(_regression_spec(s, defaults)) for s in specs)
    frames = []
    reasons: dict[str, str | None] = {}
    for i, spec in enumerate(specs):
        d = data_us if spec.regression == "us_bias" else data
        if spec.regression not in reasons:
            reasons[spec.regression] = not_estimable_reason(
                _regression_spec(spec, defaults), d, capability
            )
            if reasons[spec.regression] and log is not None:
                print(
                    f"{spec.regression}: not estimable, skipped ({reasons[spec.regression]})",
                    file=log,
                )  # type: ignore[call-overload]
        if reasons[spec.regression]:
            continue
        scheme = "responses" if spec.observation == "replicates" else "cluster"
        rspec = _regression_spec(spec, defaults)
        joined = (
            released_join_level(rspec, spec.resample_size)
            if spec.observation == "replicates"
            else None
        )
        key = (
            spec.regression if spec.regression == "us_bias" else "models",
            scheme if joined is None else f"joined:{joined}",
            spec.resample_size,
            spec.rounds,
        )
        if key not in cache and joined is not None:
            # the released draw: rows of the table joined to the level's groups
            cache[key] = released_replicates(
                d, joined, spec.rounds, seed, consistency=with_consistency
            )
        elif key not in cache:
            cache[key] = replicates(
                d,
                scheme,
                spec.rounds,
                seed + (0 if scheme == "responses" else 1),
                resample_size=spec.resample_size,
                units=units,
                levels=levels,
                released_level="language" if scheme == "responses" else None,
                consistency=with_consistency,
                include_observed=scheme == "cluster",
            )
        rep = cache[key]
        if spec.outcome != "spearman":
            okey = (*key, spec.outcome)
            if okey not in ocache:
                ocache[okey] = ReplicateResult(
                    distribution_replicates(
                        d, spec.outcome, rounds=spec.rounds, seed=seed + 1, levels=levels
                    ),
                    rep.consistency,
                )
            rep = ocache[okey]
        try:
            if spec.observation == "replicates":
                res: ModeResult = run_replicates_mode(
                    rspec,
                    d,
                    capability,
                    rounds=spec.rounds,
                    resample_size=spec.resample_size,
                    seed=seed,
                    rep=rep,
                )
            else:
                res = run_cluster_mode(
                    rspec,
                    d,
                    capability,
                    rounds=spec.rounds,
                    seed=seed + 1,
                    rep=rep,
                    alpha=alpha,
                )
        except NotEstimable as exc:
            if log is not None:
                print(
                    f"[{i + 1}/{len(specs)}] {spec}: not estimable, skipped ({exc.reason})",
                    file=log,
                )  # type: ignore[call-overload]
            continue
        choice = asdict(spec) | {
            "formula": (
                resolve_mixed_formula(defaults.mixed_formula)[0]
                if spec.formula == "default" and spec.regression == "mixed_model"
                else spec.formula
                if spec.regression == "mixed_model"
                else "us_bias"
            ),
            "spec_id": i,
            "is_default": is_default(spec, defaults, first_rounds, first_size),
        }
        frames.append(
            res.coefficients.select(
                "term", "coef", "ci_low", "ci_high", "std_err", "p"
            ).with_columns(
                *(pl.lit(choice[k], dtype=SPEC_SCHEMA[k]).alias(k) for k in SPEC_SCHEMA),
                pl.lit(bool(res.info["converged"])).alias("converged"),
                pl.lit(int(res.info["n_obs"]), dtype=pl.Int64).alias("n_obs"),
            )
        )
        if log is not None:
            print(f"[{i + 1}/{len(specs)}] {spec} n_obs={res.info['n_obs']}", file=log, flush=True)  # type: ignore[call-overload]
    if not frames:
        return pl.DataFrame(schema=TABLE_SCHEMA)
    table = pl.concat(frames, how="vertical")
    return (
        table.with_columns(
            pl.col("coef").sign().cast(pl.Int64).alias("sign"),
            (pl.col("p") < alpha).fill_null(False).alias("significant"),
        )
        .select(
            *SPEC_SCHEMA,
            "term",
            "coef",
            "ci_low",
            "ci_high",
            "std_err",
            "p",
            "sign",
            "significant",
            "converged",
            "n_obs",
        )
        .sort("regression", "spec_id", "term")
    )


def key_terms(table: pl.DataFrame, patterns: Mapping[str, str]) -> pl.DataFrame:
    """Rows of the table whose term matches its regression's key-term pattern."""
    parts = []
    for reg, pattern in patterns.items():
        rx = term_regex(pattern)
        part = table.filter(pl.col("regression") == reg)
        parts.append(
            part.filter(
                pl.col("term").map_elements(
                    lambda t, rx=rx: bool(rx.search(t)), return_dtype=pl.Boolean
                )
            )
        )
    return pl.concat(parts) if parts else table.clear()


def term_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per regression × term: the default estimate, the number of specifications, the share with
    the default's sign, the share significant (overall and per observation unit), and the range
    of estimates."""
    default = table.filter(pl.col("is_default")).select(
        "regression",
        "term",
        pl.col("coef").alias("default_coef"),
        pl.col("sign").alias("default_sign"),
        pl.col("significant").alias("default_significant"),
    )
    joined = table.join(default, on=["regression", "term"], how="left")
    return (
        joined.group_by("regression", "term")
        .agg(
            pl.col("default_coef").first(),
            pl.col("default_significant").first(),
            pl.len().cast(pl.Int64).alias("n_specs"),
            (pl.col("sign") == pl.col("default_sign")).mean().alias("share_same_sign"),
            pl.col("significant").mean().alias("share_significant"),
            pl.col("significant")
            .filter(pl.col("observation") == "replicates")
            .mean()
            .alias("share_significant_replicates"),
            pl.col("significant")
            .filter(pl.col("observation") == "cluster_bootstrap")
            .mean()
            .alias("share_significant_cluster"),
            pl.col("coef").min().alias("coef_min"),
            pl.col("coef").median().alias("coef_median"),
            pl.col("coef").max().alias("coef_max"),
        )
        .sort("regression", "term")
    )


def speccurve_stage(
    data: AnalysisData,
    capability: pl.DataFrame | None,
    *,
    grid: Mapping[str, object],
    defaults: Mapping[str, object],
    seed: int,
    figure_dir: str | os.PathLike[str],
    log: TextIO | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Expand the grid (failing when it exceeds ``max_specs`` or names a ground truth the data
    lacks), say its size, fit every specification, draw one specification curve per key term
    into `figure_dir`, and return the tidy table and the per-term summary."""
    from polyculture.wvs.alignment_figures import plot_specification_curve

    specs = expand_grid(grid, int(grid["cluster_rounds"]))  # type: ignore[call-overload]
    max_specs = int(grid.get("max_specs", 64))  # type: ignore[call-overload]
    message = grid_size_message(specs)
    if log is not None:
        print(message, file=log, flush=True)
    if len(specs) > max_specs:
        raise ConfigError(
            "alignment.speccurve.max_specs", f"{message}: more than the limit of {max_specs}"
        )
    levels = {lvl for (lvl, _) in data.ground_truth}
    for s in specs:
        if s.regression == "mixed_model" and s.ground_truth not in levels:
            raise InputError(
                "ground truth",
                f"the grid asks for ground truth '{s.ground_truth}' but the inputs have only: {', '.join(sorted(levels))}",
            )
    d = Defaults(**defaults)  # type: ignore[arg-type]
    table = run_speccurve(
        data, capability, specs, d, seed=seed, alpha=float(grid.get("alpha", 0.05)), log=log
    )  # type: ignore[arg-type]
    summary = term_summary(table)
    keys = key_terms(table, dict(grid.get("key_terms", {})))  # type: ignore[call-overload]
    out = Path(figure_dir)
    out.mkdir(parents=True, exist_ok=True)
    for (reg, term), rows in sorted(keys.group_by(["regression", "term"]), key=lambda kv: kv[0]):
        plot_specification_curve(rows, f"{reg}: {term}", out / f"{reg}__{term_slug(str(term))}.png")
    return table, summary


def term_slug(term: str) -> str:
    """A file-name-safe form of a term name."""
    out = []
    for ch in term:
        out.append(ch if ch.isalnum() or ch in "-." else "_")
    return "".join(out).strip("_")


# ----------------------------------------------------------------------------------------------
# Synthetic studies with a known effect
# ----------------------------------------------------------------------------------------------


def simulate_study(
    *,
    effect: float,
    seed: int,
    families: Sequence[str] = ("f1", "f2"),
    models_per_family: int = 3,
    languages: Sequence[str] = ("da", "nl"),
    n_topics: int = 25,
    responses_per_topic: int = 6,
    base_fidelity: float = 0.5,
    summaries: int = 10,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Synthetic (responses, ground truth, capability, country languages) with a known effect of
    capability on alignment.

    Each language's population has a polarity per topic. A model × language cell has a
    capability c ~ U(0.2, 0.9) and a fidelity f = base + effect·(c − 0.55), clipped to [0, 1];
    its own view of topic t is f·(population polarity) + (1 − f)·u with u ~ U(0, 1) drawn per
    cell and topic (the model's idiosyncrasy), and each response is the share of 'pro' among
    `summaries` Bernoulli draws of that view. With ``effect = 0`` capability does not predict
    alignment; observed alignments still differ between cells through the topic-level
    idiosyncrasy and the finite responses — the noise a sound analysis must account for.
    """
    rng = np.random.default_rng(seed)
    topics = [f"q{i:03d}" for i in range(n_topics)]
    base = rng.uniform(0.05, 0.95, n_topics)
    gt_rows = []
    pop = {}
    for lang in languages:
        p = np.clip(base + rng.normal(0, 0.08, n_topics), 0.01, 0.99)
        pop[lang] = p
        gt_rows += [("language", lang, t, float(v)) for t, v in zip(topics, p, strict=True)]
        gt_rows += [
            ("country", f"C{lang.upper()}", t, float(v)) for t, v in zip(topics, p, strict=True)
        ]
    us = np.clip(base + rng.normal(0, 0.08, n_topics), 0.01, 0.99)
    gt_rows += [("country", "US", t, float(v)) for t, v in zip(topics, us, strict=True)]
    resp_rows = []
    cap_rows = []
    for fam in families:
        for j in range(models_per_family):
            model = f"{fam}-m{j}"
            for lang in languages:
                c = float(rng.uniform(0.2, 0.9))
                cap_rows.append((model, lang, c))
                f = float(np.clip(base_fidelity + effect * (c - 0.55), 0.0, 1.0))
                view = f * pop[lang] + (1 - f) * rng.uniform(0, 1, n_topics)
                k = 0
                for ti, t in enumerate(topics):
                    draws = rng.binomial(summaries, view[ti], responses_per_topic) / summaries
                    for v in draws:
                        resp_rows.append((model, fam, lang, t, f"r{k}", float(v)))
                        k += 1
    responses = pl.DataFrame(
        resp_rows,
        schema=RESPONSE_SCHEMA,
        orient="row",
    )
    gt = pl.DataFrame(
        gt_rows,
        schema=GROUND_TRUTH_SCHEMA,
        orient="row",
    )
    capability = pl.DataFrame(
        cap_rows,
        schema={"model": pl.String, "language": pl.String, "capability": pl.Float64},
        orient="row",
    )
    cl = pl.DataFrame(
        [(f"C{lang.upper()}", lang) for lang in languages],
        schema={"country": pl.String, "language": pl.String},
        orient="row",
    )
    return responses, gt, capability, cl


__all__ = [
    "BASELINE_MODEL",
    "Defaults",
    "Spec",
    "expand_grid",
    "grid_size_message",
    "key_terms",
    "run_speccurve",
    "simulate_study",
    "speccurve_stage",
    "term_summary",
]
