"""Rule score_consistency: C per question and side, mean similarity per sample."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.consistency import score_embeddings
from polyculture.consensus.tables import read_tables, write_drops, write_table

p = snakemake.params
embeddings = read_tables(snakemake.input.embeddings, None)
consistency, samples, drops = score_embeddings(embeddings, min_samples=p.min_samples)
write_drops([drops], snakemake.output.drops)
drops.check(p.max_drop_rate)
write_table(consistency, snakemake.output.consistency, p.consistency_schema)
write_table(samples, snakemake.output.samples, p.samples_schema)
