"""Rule train_summary: one row per training variant, and the drop counts of all variants."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import json

from polyculture.drops import concat_drops
from polyculture.io import read_table, read_text_utf8, write_parquet, write_text
from polyculture.train import summary_table

summaries = [json.loads(read_text_utf8(p)) for p in snakemake.input.summaries]
write_text(summary_table(summaries).write_csv(separator="\t"), snakemake.output.table)
drops = [read_table(p, snakemake.params.drops_schema) for p in snakemake.input.drops]
write_parquet(concat_drops(drops), snakemake.output.drops)
