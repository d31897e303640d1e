"""The specification-curve grid: which analysis choices exist and every combination a config
asks for. Light on imports (no statsmodels): the workflow checks the grid while it parses."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from polyculture.errors import ConfigError

#: Observation units of the regressions: resampled replicates or a cluster bootstrap.
MODES = ("replicates", "cluster_bootstrap")
#: Ground truths the mixed model can compare against.
GROUND_TRUTH_CHOICES = ("language", "country", "merged", "global")
REGRESSIONS = ("mixed_model", "us_bias")

#: Named formulas of the mixed model (RQ1). Capability is called `multilingual` in the released
#: code; here it is `capability`. Sources:
#: - ``eq1``: the paper's Eq. 1 (§3.2): random intercept α_j ~ N(μ_α, σ²_α) per model, so a fixed
#:   intercept μ_α, the consistency slope β_1 and one capability slope per family × language.
#: - ``released_interaction``: what the released analysis fitted for its coefficient figure and
#:   its published table — scripts/reproduce_plots.sh runs scripts/plot_multilingual_benchmarks.py
#:   with its default ``--regression-type interaction``, whose summary is
#:   supplementary/regressions/multilingual_regression_results_interaction.txt (3,600 rows):
#:   no fixed intercept, one consistency slope per language.
#: - ``released_normal``: the released run_multilingual_regression default ("normal"): no fixed
#:   intercept, one consistency slope.
#: - ``released_no_consistency``: the released "no_consistency" variant.
MIXED_FORMULAS = {
    "eq1": "alignment ~ 1 + consistency + capability:family:language",
    "released_interaction": "alignment ~ 0 + consistency:language + capability:family:language",
    "released_normal": "alignment ~ 0 + consistency + capability:family:language",
    "released_no_consistency": "alignment ~ 0 + capability:family:language",
}
#: The formula whose fit the released code published (see MIXED_FORMULAS).
RELEASED_MIXED_FORMULA = "released_interaction"


def resolve_mixed_formula(value: str) -> tuple[str, str]:
    """(name, formula) of a mixed-model formula given by name (a key of MIXED_FORMULAS) or
    written out (then its name is the name of the equal named formula, else 'custom')."""
    if value in MIXED_FORMULAS:
        return value, MIXED_FORMULAS[value]
    norm = " ".join(value.split())
    for name, formula in MIXED_FORMULAS.items():
        if formula == norm:
            return name, formula
    if "~" not in value:
        raise ConfigError(
            "alignment.mixed_model.formula",
            f"'{value}' is neither a named formula ({', '.join(MIXED_FORMULAS)}) nor a formula "
            "with '~'",
        )
    return "custom", value


UNIT_CHOICES = ("topic", "response")
GRID_KEYS = (
    "regressions",
    "ground_truth",
    "units",
    "observation_units",
    "resample_sizes",
    "rounds",
    "consistency",
    "formulas",
    "outcomes",
)
#: Alignment outcomes of the regressions: Spearman (the paper) or 1 − a distribution distance
#: (polyculture.wvs.distribution; topic unit and cluster bootstrap only).
OUTCOMES = ("spearman", "mae", "js_distance", "wasserstein")


@dataclass(frozen=True)
class Spec:
    """One combination of analysis choices for one regression."""

    regression: str
    ground_truth: str
    unit: str
    observation: str
    resample_size: int | None
    rounds: int
    consistency: bool
    formula: str = "default"  # RQ1: a name of MIXED_FORMULAS, or 'default' (the configured one)
    outcome: str = "spearman"  # the alignment measure: Spearman or 1 − a distribution distance


def _choices(grid: Mapping[str, object], key: str, allowed: Sequence[object]) -> list:
    values = grid.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"alignment.speccurve.{key}", "must be a non-empty list of choices")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(
            f"alignment.speccurve.{key}",
            f"unknown choice(s) {', '.join(map(repr, bad))} (expected {', '.join(map(str, allowed))})",
        )
    return list(dict.fromkeys(values))


def expand_grid(grid: Mapping[str, object], cluster_rounds: int) -> list[Spec]:
    """Every specification of the grid (`grid`: the config's speccurve section). Unknown choice
    names fail naming the key; choices that do not apply to a regression or an observation unit
    (RQ2 has no ground-truth or consistency choice; the cluster unit has no resample size and
    uses `cluster_rounds`) are not multiplied in."""
    unknown = [
        k
        for k in grid
        if k not in (*GRID_KEYS, "enabled", "cluster_rounds", "key_terms", "max_specs", "alpha")
    ]
    if unknown:
        raise ConfigError("alignment.speccurve", f"unknown key(s) {', '.join(unknown)}")
    regressions = _choices(grid, "regressions", REGRESSIONS)
    gts = _choices(grid, "ground_truth", GROUND_TRUTH_CHOICES)
    units = _choices(grid, "units", UNIT_CHOICES)
    obs = _choices(grid, "observation_units", MODES)
    sizes = grid.get("resample_sizes")
    if (
        not isinstance(sizes, list)
        or not sizes
        or any(s is not None and (not isinstance(s, int) or s < 2) for s in sizes)
    ):
        raise ConfigError(
            "alignment.speccurve.resample_sizes",
            "must be a list of integers ≥ 2 or null (as many as observed)",
        )
    rounds = grid.get("rounds")
    if (
        not isinstance(rounds, list)
        or not rounds
        or any(not isinstance(r, int) or r < 2 for r in rounds)
    ):
        raise ConfigError("alignment.speccurve.rounds", "must be a list of integers ≥ 2")
    cons = _choices(grid, "consistency", (True, False))
    formulas = (
        _choices(grid, "formulas", tuple(MIXED_FORMULAS)) if grid.get("formulas") else ["default"]
    )
    outcomes = _choices(grid, "outcomes", OUTCOMES) if grid.get("outcomes") else ["spearman"]
    if cluster_rounds < 2:
        raise ConfigError("alignment.speccurve.cluster_rounds", "must be ≥ 2")
    specs: list[Spec] = []
    for reg in regressions:
        reg_gts = gts if reg == "mixed_model" else ["country"]
        reg_cons = cons if reg == "mixed_model" else [True]
        reg_formulas = formulas if reg == "mixed_model" else ["default"]
        for f, gt, unit, o, c in itertools.product(reg_formulas, reg_gts, units, obs, reg_cons):
            if not c and f == "released_no_consistency":
                continue  # the same fit as with consistency
            if o == "replicates":
                for size, r in itertools.product(
                    list(dict.fromkeys(sizes)), list(dict.fromkeys(rounds))
                ):
                    specs.append(Spec(reg, gt, unit, o, size, r, c, f))
            else:
                specs.append(Spec(reg, gt, unit, o, None, cluster_rounds, c, f))
        # distribution outcomes: per topic, with the cluster bootstrap (the sound unit), the
        # first formula and the configured consistency choices
        for out, gt, c in itertools.product(
            [x for x in outcomes if x != "spearman"], reg_gts, reg_cons
        ):
            specs.append(
                Spec(
                    reg,
                    gt,
                    "topic",
                    "cluster_bootstrap",
                    None,
                    cluster_rounds,
                    c,
                    reg_formulas[0],
                    out,
                )
            )
    return specs


def grid_size_message(specs: Sequence[Spec]) -> str:
    """One line that says how many fits the grid costs, printed before it runs."""
    n_boot = sum(s.rounds for s in specs if s.observation == "cluster_bootstrap")
    by_reg = {r: sum(1 for s in specs if s.regression == r) for r in REGRESSIONS}
    return (
        f"specification curve: {len(specs)} specifications "
        f"({', '.join(f'{k}: {v}' for k, v in by_reg.items() if v)}), "
        f"{sum(1 for s in specs if s.observation == 'replicates')} replicate-unit fits and "
        f"{n_boot} cluster-bootstrap refits"
    )
