"""Rule alignment: Spearman alignment per model × language × level × group × unit, with
seeded bootstrap intervals and low-n flags; distribution metrics (MAE, Jensen–Shannon,
Wasserstein-1) with bootstrap intervals over topics."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_outputs
from polyculture.wvs.alignment import alignment_table, load_analysis_data
from polyculture.wvs.distribution import distribution_table

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
    min_responses=p.min_responses,
)
logging.info("%d alignment rows", table.height)
low = table.filter("low_n").select("model", "language", "n_responses").unique().sort("model")
logging.info("cells with fewer than %d responses (flagged low_n):\n%s", p.min_responses, low)
dist = distribution_table(
    data,
    rounds=p.distribution["rounds"],
    seed=p.seed + 1,
    alpha=p.bootstrap["alpha"],
    survey_size=p.distribution["survey_size"],
)
with write_outputs() as out:
    out.parquet(table, snakemake.output.alignment)
    out.parquet(dist, snakemake.output.distribution)
    out.tsv(dist, snakemake.output.distribution_tsv, float_precision=4)
