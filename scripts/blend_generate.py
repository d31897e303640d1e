"""Rule blend_generate: one engine (a base model and every adapter of it that is evaluated)
answers every country's BLEnD questions in every configured language with every prompt
template, one call per (eval model, country), through the answer cache."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import torch

from polyculture.backends.answer_cache import AnswerCache
from polyculture.backends.generation import sampling_from_config
from polyculture.backends.spec import is_api_spec
from polyculture.blend import country_prompts
from polyculture.blend.engine import job_answers
from polyculture.io import write_outputs

torch.set_num_threads(snakemake.threads)
p = snakemake.params
prompts = {c: country_prompts(p.data_dir, c, runs, p.max_questions) for c, runs in p.runs.items()}
sampling = sampling_from_config(p.sampling, p.seed, key="evaluate.blend.sampling")
# an API model's requests are resumed by its own reply cache (and its usage file stays whole)
cache = None if is_api_spec(p.model) else AnswerCache(p.cache_dir, p.spec)
answers = job_answers(
    p.spec, p.model, p.members, p.backend, prompts, sampling, p.prompt_format, cache
)
with write_outputs() as out:
    out.table(answers, snakemake.output.answers, p.schema)
