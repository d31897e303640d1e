"""Rule blend_generate: one model answers one country's BLEnD questions in every configured
language with every prompt template, in one backend call."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import torch

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.blend import answer_prompts, country_prompts
from polyculture.io import write_outputs

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
prompts = country_prompts(p.data_dir, w.blend_country, p.runs, p.max_questions)
sampling = sampling_from_config(p.sampling, p.seed, key="evaluate.blend.sampling")
with open_generator(p.model, p.backend) as generator:
    answers, drops = answer_prompts(
        generator,
        prompts,
        sampling,
        group=f"{w.blend_model}/{w.blend_country}",
        prompt_format=p.prompt_format,
    )
logging.info("%d answers, %d empty", answers.height, drops.dropped)
with write_outputs() as out:
    out.table(answers, snakemake.output.answers, p.schema)
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
