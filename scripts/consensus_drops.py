"""Rule consensus_drops: all consensus drop counts in one table and a Markdown summary."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.tables import drops_markdown, read_tables, write_table
from polyculture.io import write_text

drops = read_tables(snakemake.input.drops, snakemake.params.schema)
write_table(drops, snakemake.output.table, snakemake.params.schema)
write_text(drops_markdown(drops), snakemake.output.markdown)
