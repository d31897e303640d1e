"""Rule consensus_drops: all consensus drop counts in one table and a Markdown summary."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.tables import drops_markdown, read_tables
from polyculture.io import write_outputs

drops = read_tables(snakemake.input.drops, snakemake.params.schema)
with write_outputs() as out:
    out.table(drops, snakemake.output.table, snakemake.params.schema)
    out.text(drops_markdown(drops), snakemake.output.markdown)
