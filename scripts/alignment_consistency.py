"""Rule self_consistency: agreement between repeated responses to a topic (no self-pairs),
against the survey populations' band."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.io import write_parquet
from polyculture.wvs.alignment import load_analysis_data
from polyculture.wvs.alignment_figures import plot_self_consistency
from polyculture.wvs.consistency import below_human_band, human_band, self_consistency_table

i, p = snakemake.input, snakemake.params
data = load_analysis_data(i.responses, i.ground_truth, i.country_languages)
human = pl.read_parquet(i.human_consistency)
table = self_consistency_table(
    data, rounds=p.rounds, released_rounds=p.released_rounds, seed=p.seed, alpha=p.alpha
)
table = below_human_band(table, human)
logging.info("self-consistency:\n%s\nhuman band: %s", table, human_band(human))
write_parquet(table, snakemake.output.table)
band_groups = human.filter(pl.col("consistency").is_not_null())["group"].to_list()
plot_self_consistency(table, human_band(human), snakemake.output.figure, band_groups)
