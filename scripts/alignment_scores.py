"""Rule alignment: Spearman alignment per model × language × level × group × unit, with
seeded bootstrap intervals."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_parquet
from polyculture.wvs.alignment import alignment_table, load_analysis_data

i, p = snakemake.input, snakemake.params
data = load_analysis_data(i.responses, i.ground_truth, i.country_languages)
table = alignment_table(
    data,
    scheme=p.bootstrap["scheme"],
    rounds=p.bootstrap["rounds"],
    resample_size=p.bootstrap["resample_size"],
    units=p.units,
    alpha=p.bootstrap["alpha"],
    seed=p.seed,
)
logging.info("%d alignment rows", table.height)
write_parquet(table, snakemake.output.alignment)
