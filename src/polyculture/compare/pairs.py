"""What is compared with what: the summary labels, adapter/base pairs, paired data aligned on
items and the country-stratified paired bootstrap."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from polyculture.errors import InputError
from polyculture.stats import PairedBootstrap

ALL = "all"  # prompt id of scores averaged over the prompt templates; benchmark macro mean


ALL_POOLED = "all (pooled)"  # benchmark task: items of every language pooled


ALL_COUNTRIES = "All"  # macro mean over countries (the headline)


ALL_POOLED_COUNTRIES = "All (pooled)"  # every country's questions pooled


SUMMARY_COUNTRIES = (ALL_COUNTRIES, ALL_POOLED_COUNTRIES)


_BOOT_CHUNK = 1000


@dataclass(frozen=True)
class Pair:
    """A compared model, the model it is compared with (its baseline), and the label of what
    differs: the adapter (a training variant's name, an adapter directory or hub id), or the
    compared entry's name where it has no adapter."""

    model: str
    base: str
    variant: str


def pair_models(eval_models: Sequence[Mapping[str, Any]]) -> tuple[list[Pair], list[str]]:
    """(model, base) pairs among the eval models, in config order, and notes on adapters left
    without a baseline. An entry's `base` names its baseline; an entry with an adapter and no
    `base` is compared with the first entry of the same model without an adapter (our choice:
    an adapter's effect is measured against the model it was applied to)."""
    bases: dict[str, str] = {}
    for m in eval_models:
        if not m.get("adapter"):
            bases.setdefault(m["model"], m["name"])
    pairs, notes = [], []
    for m in eval_models:
        base = m.get("base")
        if base is None:
            if not m.get("adapter"):
                continue
            base = bases.get(m["model"])
            if base is None:
                notes.append(
                    f"{m['name']} (adapter {m['adapter']}) is not compared: no eval model lists "
                    f"its base model {m['model']} without an adapter (or name one as its `base`)"
                )
                continue
        pairs.append(Pair(m["name"], base, m.get("adapter") or m["name"]))
    return pairs, notes


def pairs_with_results(
    pairs: Sequence[Pair], models: Sequence[str], what: str
) -> tuple[list[Pair], list[str]]:
    """The pairs whose two models both have results of `what` (a benchmark), and a note for
    each pair left out, naming the model without them."""
    have = set(models)
    kept, notes = [], []
    for p in pairs:
        missing = [m for m in (p.model, p.base) if m not in have]
        if missing:
            notes.append(
                f"{p.model} vs {p.base} is not compared on {what}: no results of "
                f"{' and '.join(missing)} there"
            )
        else:
            kept.append(p)
    return kept, notes


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
