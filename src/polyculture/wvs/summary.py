"""Reading stage tables and writing the WVS report tables (what a person reads).

- :func:`read_parts` stacks the shards of a stage (empty shards allowed).
- :func:`write_checked` checks a table against its row schema and writes it atomically.
- :func:`polarity_wide` lays polarity out as topic × group (one column per country, language
  and 'global').
- :func:`response_counts` follows each model × language from sampled responses through parsing
  to scored responses (with the share kept and the mean response polarity).
- :func:`drops_report` stacks every drops table with its drop rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from polyculture.drops import DROP_COLUMNS, DROP_SCHEMA, drop_rate_expr
from polyculture.io import read_parts
from polyculture.io import write_table as write_checked
from polyculture.wvs.topics import Topic

#: read_parts and write_checked are polyculture.io's one table reader and writer, re-exported
#: under the names the wvs scripts use.
__all__ = ["drops_report", "polarity_wide", "read_parts", "response_counts", "write_checked"]


def polarity_wide(polarity: pl.DataFrame, topics: Mapping[str, Topic]) -> pl.DataFrame:
    """Topic × group polarity table (columns 'country:DK', 'language:da', 'global', ...)."""
    df = polarity.with_columns(
        pl.when(pl.col("level") == "global")
        .then(pl.lit("global"))
        .otherwise(pl.col("level") + ":" + pl.col("group"))
        .alias("column")
    )
    order = (
        df.select("level", "group", "column")
        .unique()
        .with_columns(
            pl.col("level").replace_strict({"country": 0, "language": 1, "global": 2}).alias("rank")
        )
        .sort("rank", "group")["column"]
        .to_list()
    )
    wide = df.pivot(on="column", index="question_key", values="polarity")
    labels = pl.DataFrame(
        {
            "question_key": list(topics),
            "label": [t.label for t in topics.values()],
        }
    )
    wide = labels.join(wide, on="question_key", how="inner", maintain_order="left")
    return wide.select("question_key", "label", *order).with_columns(pl.col(pl.Float64).round(4))


def response_counts(
    responses: pl.DataFrame, parsed: pl.DataFrame, scored: pl.DataFrame
) -> pl.DataFrame:
    """Per model × language: responses sampled, kept by the parser, scored, the judge's labels of
    the scored responses' summaries (pro, con, null), and mean pro_score."""
    sampled = responses.group_by("model", "language").agg(pl.len().alias("sampled"))
    kept = parsed.group_by("model", "language").agg(
        pl.col("response_id").n_unique().alias("parsed"),
        pl.len().alias("summaries"),
    )
    judged = scored.group_by("model", "language").agg(
        pl.len().alias("scored"),
        pl.col("pro_score").mean().alias("mean_pro_score"),
        pl.col("question_key").n_unique().alias("topics"),
        pl.col("n_pro").sum().alias("labels_pro"),
        pl.col("n_con").sum().alias("labels_con"),
        pl.col("n_null").sum().alias("labels_null"),
    )
    counts = ["parsed", "summaries", "scored", "topics", "labels_pro", "labels_con", "labels_null"]
    out = (
        sampled.join(kept, on=["model", "language"], how="left")
        .join(judged, on=["model", "language"], how="left")
        .with_columns(pl.col(*counts).fill_null(0))
        .with_columns(
            (pl.col("parsed") / pl.col("sampled")).alias("share_parsed"),
            (pl.col("scored") / pl.col("sampled")).alias("share_scored"),
        )
        .sort("model", "language")
    )
    return out.with_columns(pl.col(pl.Float64).round(4))


def drops_report(drops: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Every drops table stacked, with the drop rate of each row."""
    frames = [d.select(*DROP_COLUMNS) for d in drops if d.height]
    if not frames:
        return pl.DataFrame(schema={**DROP_SCHEMA, "rate": pl.Float64})
    df = pl.concat(frames, how="vertical_relaxed")
    return df.with_columns(drop_rate_expr())
