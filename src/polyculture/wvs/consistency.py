"""Stage 8: self-consistency of models — agreement between repeated responses to one topic.

A model's self-consistency in a language is the Pearson correlation between the polarities of
two different responses to the same topic, over all ordered pairs of responses to a topic
(:func:`polyculture.wvs.alignment.pair_correlation`): 1 is perfect agreement, 0 is random.
No response is paired with itself. Its interval comes from the cluster bootstrap (topics
resampled with replacement), where a response drawn twice is still one response: its
copies are not paired with each other.

The released analysis paired rows of a table that held every response once per ground-truth
group and, in every bootstrap round, duplicated rows too, so responses were paired with
themselves, took Spearman's correlation and divided it by (1 − 0.045);
``consistency_released`` is that statistic exactly on all responses (no resample;
:func:`polyculture.wvs.released.released_consistency`) and ``released_ci_low/high`` the
percentile interval of its bootstrap distribution drawn the released way (rows of the joined
table; :func:`polyculture.wvs.released.released_replicates`), so the inflation can be seen
beside the sound value.

The human band is the range of the survey populations' own self-consistency (correlation of
polarity vectors between resampled halves of respondents; the paper reports 0.66-0.84).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from polyculture.wvs.alignment import AnalysisData, percentile_interval, replicates
from polyculture.wvs.released import released_consistency, released_replicates

CONSISTENCY_COLUMNS = (
    "model",
    "family",
    "language",
    "consistency",
    "ci_low",
    "ci_high",
    "se",
    "n_pairs",
    "n_topics",
    "n_responses",
    "consistency_released",
    "released_ci_low",
    "released_ci_high",
    "n_boot",
    "released_rounds",
)


def self_consistency_table(
    data: AnalysisData,
    *,
    rounds: int,
    seed: int,
    released_rounds: int = 100,
    released_level: str | None = "language",
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Self-consistency per model × language with a cluster-bootstrap interval, and the
    released pairing's value beside it (NaN when `released_level` is None or has no ground
    truth). Columns: see ``CONSISTENCY_COLUMNS``."""
    sound = replicates(data, "cluster", rounds, seed, units=(), released_level=None).consistency
    released = None
    released_boot = None
    if released_level is not None and any(lvl == released_level for lvl, _ in data.ground_truth):
        released = released_consistency(data, released_level)
        if released_rounds > 0:
            released_boot = released_replicates(
                data, released_level, released_rounds, seed + 1
            ).consistency
    rows = []
    for cell in data.cells:
        part = sound.filter((pl.col("model") == cell.model) & (pl.col("language") == cell.language))
        observed = part.filter(pl.col("replicate") == -1).row(0, named=True)
        boot = part.filter(pl.col("replicate") >= 0)["consistency"].to_numpy()
        low, high, sd, _ = percentile_interval(boot, alpha)
        rel = rel_low = rel_high = float("nan")
        mine = (pl.col("model") == cell.model) & (pl.col("language") == cell.language)
        if released is not None:
            r = released.filter(mine)
            rel = (
                float(r["consistency_released"][0])
                if r.height and r["consistency_released"][0] is not None
                else float("nan")
            )
        if released_boot is not None:
            rb = released_boot.filter(mine)["consistency_released"].to_numpy()
            rel_low, rel_high, _, _ = percentile_interval(rb, alpha)
        rows.append(
            {
                "model": cell.model,
                "family": cell.family,
                "language": cell.language,
                "consistency": observed["consistency"],
                "ci_low": low,
                "ci_high": high,
                "se": sd,
                "n_pairs": observed["n_pairs"],
                "n_topics": int((cell.counts > 0).sum()),
                "n_responses": cell.n,
                "consistency_released": rel,
                "released_ci_low": rel_low,
                "released_ci_high": rel_high,
                "n_boot": rounds,
                "released_rounds": released_rounds if released_boot is not None else 0,
            }
        )
    schema = {c: pl.String for c in CONSISTENCY_COLUMNS[:3]} | {
        "consistency": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "se": pl.Float64,
        "n_pairs": pl.Int64,
        "n_topics": pl.Int64,
        "n_responses": pl.Int64,
        "consistency_released": pl.Float64,
        "released_ci_low": pl.Float64,
        "released_ci_high": pl.Float64,
        "n_boot": pl.Int64,
        "released_rounds": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).sort("model", "language")


def human_band(human: pl.DataFrame) -> tuple[float, float]:
    """(lowest, highest) self-consistency of the survey populations (NaN, NaN when empty)."""
    v = human["consistency"].drop_nulls().to_numpy().astype(np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.min()), float(v.max())


def below_human_band(table: pl.DataFrame, human: pl.DataFrame) -> pl.DataFrame:
    """The consistency table with ``below_human`` (the interval lies entirely below the lowest
    population) — the paper's finding that models are less consistent than people."""
    low, _ = human_band(human)
    return table.with_columns((pl.col("ci_high") < low).alias("below_human"))
