"""Rule score_consistency: C per question and side, mean similarity per sample (the embedding
shards are read in batches: memory is bounded by a batch, not by the number of questions)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.consistency import score_embedding_files
from polyculture.io import write_outputs

p = snakemake.params
consistency, samples, drops = score_embedding_files(
    snakemake.input.embeddings, min_samples=p.min_samples
)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(consistency, snakemake.output.consistency, p.consistency_schema)
    out.table(samples, snakemake.output.samples, p.samples_schema)
