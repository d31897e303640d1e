"""Rule score_consistency: C per question and side, mean similarity per sample."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.consistency import score_embeddings
from polyculture.consensus.tables import read_tables
from polyculture.io import write_outputs

p = snakemake.params
embeddings = read_tables(snakemake.input.embeddings, None)
consistency, samples, drops = score_embeddings(embeddings, min_samples=p.min_samples)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(consistency, snakemake.output.consistency, p.consistency_schema)
    out.table(samples, snakemake.output.samples, p.samples_schema)
