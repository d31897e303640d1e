"""Rule wvs_survey: one shard of an eval model's responses to one language's prompts."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.io import read_table, shard_bounds
from polyculture.wvs.prompts import language_prompts, stage_seed, survey
from polyculture.wvs.summary import write_checked

p = snakemake.params
w = snakemake.wildcards
prompts = language_prompts(
    read_table(snakemake.input.prompts, p.schemas["in"]), w.language, snakemake.input.prompts
)
start, stop = shard_bounds(prompts.height, int(w.shard), p.n_shards)
shard = prompts.slice(start, stop - start)
seed = stage_seed(p.seed, w.model, w.language, w.shard)
sampling = sampling_from_config(p.sampling, seed, key="wvs.sampling")
with open_generator(p.model, p.backend) as generator:
    responses = survey(
        generator,
        shard,
        model=w.model,
        family=p.family,
        language=w.language,
        n_samples=p.samples_per_prompt,
        sampling=sampling,
        stop=p.stop,
    )
logging.info("%d responses to prompts %d..%d", responses.height, start, stop - 1)
write_checked(responses, snakemake.output.responses, p.schemas["out"])
