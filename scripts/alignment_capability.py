"""Rule alignment_capability: multilingual capability per model × language."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_parquet
from polyculture.wvs.replication import capability_from_general_eval, read_capability_table

p = snakemake.params
if p.source == "table":
    table = read_capability_table(
        snakemake.input.table,
        model_aliases=p.model_aliases,
        scale=p.scale,
        exclude_benchmarks=p.exclude_benchmarks,
    )
else:
    table = capability_from_general_eval(
        list(snakemake.input.metrics), benchmarks=p.benchmarks, scale=p.scale
    )
logging.info("capability:\n%s", table)
write_parquet(table, snakemake.output.capability)
