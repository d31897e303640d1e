"""Rule wvs_judge: the judge labels one shard of a model's summaries pro / con / null."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.io import read_table
from polyculture.wvs.prompts import stage_seed
from polyculture.wvs.stances import judge_items, shard_responses
from polyculture.wvs.summary import write_checked
from polyculture.wvs.topics import load_topics

p = snakemake.params
w = snakemake.wildcards
items = read_table(snakemake.input.parsed, p.schemas["in"], allow_empty=True)
items = shard_responses(items, int(w.shard), p.n_shards)
topics = load_topics(snakemake.input.topics)
sampling = sampling_from_config(
    p.sampling, stage_seed(p.seed, w.model, w.shard), key="wvs.judge_sampling"
)
with open_generator(p.judge, p.backend, load=items.height > 0) as generator:
    labels = judge_items(generator, items, topics, sampling, mode=p.mode)
logging.info("%d summaries judged, %d invalid", labels.height, labels["stance"].null_count())
write_checked(labels, snakemake.output.judged, p.schemas["out"])
