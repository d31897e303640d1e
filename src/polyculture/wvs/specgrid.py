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
UNIT_CHOICES = ("topic", "response")
GRID_KEYS = (
    "regressions",
    "ground_truth",
    "units",
    "observation_units",
    "resample_sizes",
    "rounds",
    "consistency",
)


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
    if cluster_rounds < 2:
        raise ConfigError("alignment.speccurve.cluster_rounds", "must be ≥ 2")
    specs: list[Spec] = []
    for reg in regressions:
        reg_gts = gts if reg == "mixed_model" else ["country"]
        reg_cons = cons if reg == "mixed_model" else [True]
        for gt, unit, o, c in itertools.product(reg_gts, units, obs, reg_cons):
            if o == "replicates":
                for size, r in itertools.product(
                    list(dict.fromkeys(sizes)), list(dict.fromkeys(rounds))
                ):
                    specs.append(Spec(reg, gt, unit, o, size, r, c))
            else:
                specs.append(Spec(reg, gt, unit, o, None, cluster_rounds, c))
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
