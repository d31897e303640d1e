"""Rule alignment_capability_figure: alignment against capability per language."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import polars as pl

from polyculture.wvs.alignment_figures import plot_alignment_vs_capability

p = snakemake.params
alignment = pl.read_parquet(snakemake.input.alignment).filter(
    (pl.col("unit") == p.unit)
    & (pl.col("level") == p.level)
    & ((pl.col("group") == pl.col("language")) | (pl.lit(p.level) == "global"))
)
points = alignment.join(pl.read_parquet(snakemake.input.capability), on=["model", "language"])
plot_alignment_vs_capability(
    points, pl.read_parquet(snakemake.input.coefficients), snakemake.output.figure
)
