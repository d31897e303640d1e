"""Reading and writing the consensus stage tables with their row schemas."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import polars as pl

from polyculture.drops import DropCounter, concat_drops
from polyculture.io import check_columns, read_table, write_parquet


def write_table(df: pl.DataFrame, path: str | os.PathLike[str], schema: Any) -> None:
    """Check `df` against a row schema (file or mapping), then write it as Parquet atomically."""
    check_columns(df, schema, path)
    write_parquet(df, path)


def read_tables(paths: Sequence[str | os.PathLike[str]], schema: Any) -> pl.DataFrame:
    """Several Parquet parts (e.g. shards) with the same schema, stacked; empty parts allowed."""
    parts = [read_table(p, schema, allow_empty=True) for p in paths]
    parts = [p for p in parts if p.height]
    if not parts:
        return read_table(paths[0], schema, allow_empty=True).clear()
    return pl.concat(parts, how="vertical_relaxed")


def write_drops(counters: Sequence[DropCounter], path: str | os.PathLike[str]) -> None:
    """Write the drop counts of one stage (one or more groups)."""
    write_parquet(concat_drops([c.to_frame() for c in counters]), path)


def drops_markdown(drops: pl.DataFrame) -> str:
    """Markdown table of dropped items by stage, group and reason, with the drop rate."""
    lines = [
        "# Consensus: dropped items by stage and reason",
        "",
        "| stage | group | reason | dropped | of | rate |",
        "|---|---|---|---|---|---|",
    ]
    for stage, group, reason, dropped, total in drops.select(
        "stage", "group", "reason", "dropped", "total"
    ).iter_rows():
        rate = f"{dropped / total:.1%}" if total else "-"
        lines.append(f"| {stage} | {group} | {reason} | {dropped} | {total} | {rate} |")
    return "\n".join(lines) + "\n"
