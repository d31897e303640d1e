"""Reading and writing the consensus stage tables with their row schemas."""

from __future__ import annotations

import os
from collections.abc import Sequence

import polars as pl

from polyculture.drops import DropCounter, concat_drops, drop_rate
from polyculture.io import read_parts as read_tables
from polyculture.io import write_parquet, write_table

#: read_tables and write_table are polyculture.io's one table reader and writer (read_parts,
#: write_table), re-exported under the names the consensus scripts use.
__all__ = ["drops_markdown", "read_tables", "write_drops", "write_table"]


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
        rate = f"{drop_rate(dropped, total):.1%}"
        lines.append(f"| {stage} | {group} | {reason} | {dropped} | {total} | {rate} |")
    return "\n".join(lines) + "\n"
