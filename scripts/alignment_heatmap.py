"""Rule alignment_country_heatmap: correlations between the populations' polarity vectors."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import polars as pl

from polyculture.io import write_parquet
from polyculture.wvs.alignment import country_correlations
from polyculture.wvs.alignment_figures import plot_country_heatmap

corr = country_correlations(pl.read_parquet(snakemake.input.ground_truth), snakemake.params.levels)
write_parquet(corr, snakemake.output.table)
plot_country_heatmap(corr, snakemake.output.figure)
