"""Reading and writing the consensus stage tables with their row schemas."""

from __future__ import annotations

import polars as pl

from polyculture.drops import drop_rate
from polyculture.io import read_parts as read_tables
from polyculture.io import write_table

#: read_tables and write_table are polyculture.io's one table reader and writer (read_parts,
#: write_table), re-exported under the names the consensus scripts use.
__all__ = ["drops_markdown", "read_tables", "write_table"]


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
