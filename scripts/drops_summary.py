"""Rule drops_summary: the drop counts of every enabled pipeline in one table."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.drops import drops_summary
from polyculture.io import read_table, write_outputs

tables = {
    pipeline: [read_table(path, snakemake.params.schema) for path in snakemake.input[pipeline]]
    for pipeline in snakemake.params.pipelines
}
summary = drops_summary(tables)
logging.info("%d drop rows from %s", summary.height, ", ".join(tables))
with write_outputs() as out:
    out.parquet(summary, snakemake.output.table)
    out.tsv(summary, snakemake.output.tsv, float_precision=4)
