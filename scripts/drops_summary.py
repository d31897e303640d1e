"""Rule drops_summary: the drop counts of every enabled pipeline in one table."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.drops import drops_summary
from polyculture.io import read_table, write_parquet, write_text

tables = {
    pipeline: [read_table(path, snakemake.params.schema) for path in snakemake.input[pipeline]]
    for pipeline in snakemake.params.pipelines
}
summary = drops_summary(tables)
logging.info("%d drop rows from %s", summary.height, ", ".join(tables))
write_parquet(summary, snakemake.output.table)
write_text(summary.write_csv(separator="\t", float_precision=4), snakemake.output.tsv)
