"""Rule embed_responses: embeddings of every non-blank answer of one shard."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.responses import embedding_table, usable_responses
from polyculture.consensus.tables import write_drops, write_table
from polyculture.embed import embed_texts, load_embedder
from polyculture.io import read_table

p = snakemake.params
responses, drops = usable_responses(read_table(snakemake.input.responses, allow_empty=True))
drops.group = f"shard-{snakemake.wildcards.shard}"
embedder = load_embedder(p.embedder) if responses.height else None
table = embedding_table(
    responses,
    lambda texts: embed_texts(embedder, texts, batch_size=p.batch_size, prompt_name=p.prompt_name),
)
write_drops([drops], snakemake.output.drops)
drops.check(p.max_drop_rate)
write_table(table, snakemake.output.embeddings, p.schema)
