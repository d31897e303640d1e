"""Rule wvs_polarity: microdata → coded answers → value polarity per country, language, global."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.wvs.polarity import MicrodataColumns, microdata_polarity
from polyculture.wvs.summary import write_checked
from polyculture.wvs.topics import (
    load_country_languages,
    load_topics,
    select_topics,
    with_zero_code,
)

p = snakemake.params
topics = with_zero_code(select_topics(load_topics(snakemake.input.topics), p.topics), p.zero_code)
country_languages = load_country_languages(snakemake.input.country_languages)
columns = MicrodataColumns(
    country=p.columns["country"],
    language=p.columns["language"],
    weights=tuple(p.columns["weights"]),
)
polarity, answers, summary = microdata_polarity(
    snakemake.input.microdata,
    topics,
    columns,
    country_languages,
    language_from=p.language_from,
    min_valid=p.min_valid,
)
logging.info("answer codes per topic:\n%s", summary)
write_checked(answers, snakemake.output.answers, p.schemas["answers"])
write_checked(summary, snakemake.output.summary, p.schemas["summary"])
write_checked(country_languages, snakemake.output.country_languages, p.schemas["country_languages"])
write_checked(polarity, snakemake.output.polarity, p.schemas["polarity"])
