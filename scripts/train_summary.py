"""Rule train_summary: one row per training variant, and the drop counts of all variants."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import json

from polyculture.drops import concat_drops
from polyculture.io import read_table, read_text_utf8, write_outputs
from polyculture.train import summary_table

summaries = [json.loads(read_text_utf8(p)) for p in snakemake.input.summaries]
drops = [read_table(p, snakemake.params.drops_schema) for p in snakemake.input.drops]
with write_outputs() as out:
    out.tsv(summary_table(summaries), snakemake.output.table)
    out.parquet(concat_drops(drops), snakemake.output.drops)
