"""Rule wvs_polarity: microdata → coded answers → value polarity per country, language, global."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_outputs
from polyculture.wvs.polarity import MicrodataColumns, microdata_polarity
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
o = snakemake.output
with write_outputs() as out:
    out.table(answers, o.answers, p.schemas["answers"])
    out.table(summary, o.summary, p.schemas["summary"])
    out.table(country_languages, o.country_languages, p.schemas["country_languages"])
    out.table(polarity, o.polarity, p.schemas["polarity"])
