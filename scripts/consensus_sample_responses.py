"""Rule sample_responses: N answers per question and side for one shard (one backend call)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.consensus.responses import collect_responses, response_conversations
from polyculture.consensus.tables import write_table
from polyculture.io import read_table, shard_bounds

p = snakemake.params
pairs = read_table(snakemake.input.pairs, allow_empty=True)
start, stop = shard_bounds(pairs.height, int(snakemake.wildcards.shard), p.n_shards)
shard = pairs.slice(start, stop - start)
logging.info(
    "shard %s: questions %d..%d of %d", snakemake.wildcards.shard, start, stop, pairs.height
)
sampling = sampling_from_config(p.sampling, p.seed, key="consensus.responses.sampling")
with open_generator(p.model, p.backend, load=shard.height > 0) as generator:
    outputs = (
        generator.generate(response_conversations(shard), p.n, sampling)
        if generator is not None
        else []
    )
write_table(collect_responses(shard, outputs, p.n), snakemake.output.responses, p.schema)
