"""Counting model output that cannot be used, and failing when too much is dropped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from polyculture.errors import DropRateError

# columns (and their types) of every drop table
DROP_SCHEMA = {
    "stage": pl.String,
    "group": pl.String,
    "reason": pl.String,
    "dropped": pl.Int64,
    "total": pl.Int64,
}
DROP_COLUMNS = tuple(DROP_SCHEMA)


def drop_rate(dropped: int, total: int) -> float:
    """The share of `total` items that were dropped; 0.0 where nothing was seen (nothing seen,
    nothing lost). The one convention of every drops table, summary and limit check."""
    return dropped / total if total else 0.0


def drop_rate_expr() -> pl.Expr:
    """`drop_rate` of the `dropped` and `total` columns, as a Float64 column named `rate`."""
    return (
        pl.when(pl.col("total") > 0)
        .then(pl.col("dropped") / pl.col("total"))
        .otherwise(0.0)
        .cast(pl.Float64)
        .alias("rate")
    )


@dataclass
class DropCounter:
    """Dropped items by reason for one stage and group (e.g. a model × language)."""

    stage: str
    group: str = "all"
    total: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def seen(self, n: int = 1) -> None:
        """Count `n` items that entered the stage."""
        self.total += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` items dropped for `reason`."""
        self.reasons[reason] += n

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    @property
    def rate(self) -> float:
        return drop_rate(self.dropped, self.total)

    def to_frame(self) -> pl.DataFrame:
        """One row per reason (a row with reason 'none' when nothing was dropped)."""
        rows = [
            {
                "stage": self.stage,
                "group": self.group,
                "reason": r,
                "dropped": n,
                "total": self.total,
            }
            for r, n in sorted(self.reasons.items())
        ] or [
            {
                "stage": self.stage,
                "group": self.group,
                "reason": "none",
                "dropped": 0,
                "total": self.total,
            }
        ]
        return pl.DataFrame(rows, schema=DROP_SCHEMA)

    def check(self, max_rate: float) -> None:
        """Raise when the share of dropped items exceeds `max_rate`."""
        if self.total and self.rate > max_rate:
            detail = ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items()))
            raise DropRateError(
                f"stage '{self.stage}' ({self.group}) dropped {self.dropped} of {self.total} items "
                f"({self.rate:.1%}), above the configured maximum of {max_rate:.1%} ({detail})"
            )


def concat_drops(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Stack drop tables of several stages or groups."""
    if not frames:
        return DropCounter(stage="none").to_frame().clear()
    return pl.concat(frames, how="vertical")


def drops_summary(tables: Mapping[str, Sequence[pl.DataFrame]]) -> pl.DataFrame:
    """All drop tables of a run in one table: pipeline, stage, group, reason, dropped, total and
    the share dropped for that reason, one row per reason (and a 'none' row per stage and group
    that dropped nothing), pipelines in the given order and each pipeline's tables in theirs."""
    schema = {"pipeline": pl.String, **DROP_SCHEMA}
    parts = [
        frame.select(pl.lit(pipeline).alias("pipeline"), *DROP_COLUMNS).cast(schema)
        for pipeline, frames in tables.items()
        for frame in frames
    ]
    out = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=schema)
    return out.with_columns(rate=drop_rate_expr())
