"""Rule benchmark_generate: one engine (a base model and every adapter of it that the benchmark
evaluates) answers every item of one benchmark (all groups, one call per eval model), through
the answer cache."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import torch

from polyculture.backends.answer_cache import AnswerCache
from polyculture.backends.engine_job import EngineJob
from polyculture.backends.generation import sampling_from_config
from polyculture.backends.spec import is_api_spec
from polyculture.evals.tables import ENGINE_SCHEMA, engine_responses
from polyculture.io import read_table, write_outputs

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
items = read_table(snakemake.input.item_table, allow_empty=True)
sampling = sampling_from_config(
    p.generation["sampling"], p.seed, key=f"{w.benchmark}.generation.sampling"
)
# an API model's requests are resumed by its own reply cache (and its usage file stays whole)
cache = None if is_api_spec(p.model) else AnswerCache(p.cache_dir, p.spec)
job = EngineJob(p.spec, p.model, p.members, p.backend)
responses = engine_responses(job, items, sampling, p.generation["prompt_format"], cache)
with write_outputs() as out:
    out.table(responses, snakemake.output.responses, ENGINE_SCHEMA)
