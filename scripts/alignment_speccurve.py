"""Rule speccurve: the regressions refitted over the configured grid of analysis choices."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import polars as pl

from polyculture.io import write_outputs
from polyculture.wvs.alignment import load_analysis_data
from polyculture.wvs.speccurve import speccurve_stage

i, p = snakemake.input, snakemake.params
data = load_analysis_data(i.responses, i.ground_truth, i.country_languages)
with open(snakemake.log[0], "a", encoding="utf-8") as log:
    table, summary = speccurve_stage(
        data,
        pl.read_parquet(i.capability),
        grid=p.grid,
        defaults=p.defaults,
        seed=p.seed,
        figure_dir=snakemake.output.figures,
        log=log,
    )
with write_outputs() as out:
    out.parquet(table, snakemake.output.table)
    out.parquet(summary, snakemake.output.summary)
    out.tsv(summary, snakemake.output.summary_tsv)
