"""Rule embed_responses: embeddings of every non-blank answer of one shard."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.embedding import embed_texts
from polyculture.backends.open import open_embedder
from polyculture.consensus.responses import embedding_table, usable_responses
from polyculture.io import read_table, write_outputs

p = snakemake.params
responses, drops = usable_responses(read_table(snakemake.input.responses, allow_empty=True))
drops.group = f"shard-{snakemake.wildcards.shard}"
with open_embedder(p.model, load=responses.height > 0) as embedder:
    table = embedding_table(
        responses,
        lambda texts: embed_texts(
            embedder, texts, batch_size=p.batch_size, prompt_name=p.prompt_name
        ),
    )
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(table, snakemake.output.embeddings, p.schema)
