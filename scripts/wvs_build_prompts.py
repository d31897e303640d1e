"""Rule wvs_build_prompts: templates × topic variants → seeded English prompt sample."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.wvs.prompts import build_prompts
from polyculture.wvs.summary import write_checked
from polyculture.wvs.topics import (
    load_country_languages,
    load_templates,
    load_topics,
    select_topics,
)

p = snakemake.params
topics = select_topics(load_topics(snakemake.input.topics), p.topics)
templates = load_templates(snakemake.input.templates)
names = load_country_languages(snakemake.input.country_languages)["name"].drop_nulls().to_list()
prompts = build_prompts(topics, templates, p.n_prompts, p.seed, country_names=names)
logging.info(
    "%d prompts over %d topics and %d templates", prompts.height, len(topics), len(templates)
)
write_checked(prompts, snakemake.output.prompts, p.schema)
