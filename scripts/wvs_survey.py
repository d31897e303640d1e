"""Rule wvs_survey: one shard of every language's prompts answered by one eval model, in one
loaded engine; each language's shard is one call through the answer cache."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.backends.answer_cache import AnswerCache, generate_calls
from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import engine_identities, generator_call, lazy_engine
from polyculture.backends.spec import is_api_spec
from polyculture.io import read_table
from polyculture.wvs.prompts import survey_request, survey_table, survey_units
from polyculture.wvs.summary import write_checked

p = snakemake.params
w = snakemake.wildcards
tables = [
    (lang, read_table(path, p.schemas["in"]), path)
    for lang, path in zip(p.languages, snakemake.input.prompts, strict=True)
]
units = survey_units(tables, int(w.shard), p.n_shards, p.seed, w.model)
requests = [
    survey_request(u.prompts, sampling_from_config(p.sampling, u.seed, key="wvs.sampling"), p.stop)
    for u in units
]
# an API model's requests are resumed by its own reply cache
cache = None if is_api_spec(p.spec) else AnswerCache(p.cache_dir, p.spec)
member = {"name": w.model, **p.model}
identity = engine_identities(p.spec, p.model["model"], [member], p.backend)[w.model]
with lazy_engine(*generator_call(p.model, p.backend)) as open_engine:
    replies, _ = generate_calls(open_engine, identity, requests, p.samples_per_prompt, cache)
for unit, (_, sampling), answers, path in zip(
    units, requests, replies, snakemake.output.responses, strict=True
):
    table = survey_table(
        unit.prompts,
        answers,
        model=w.model,
        family=p.family,
        language=unit.language,
        stop=sampling.stop,
    )
    logging.info("%s: %d responses to prompts from %d", unit.language, table.height, unit.start)
    write_checked(table, path, p.schemas["out"])
