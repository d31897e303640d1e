"""Rule wvs_parse: split an eval model's responses into summaries; drop unusable responses."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import read_parts, write_outputs
from polyculture.wvs.surveys import LanguageIdentifier, drops_frame, parse_responses

p = snakemake.params
responses = read_parts(snakemake.input.responses, p.schemas["in"])
identifier = LanguageIdentifier(tuple(p.candidates)) if p.check_language else None
parsed, counters = parse_responses(
    responses, min_items=p.min_items, identifier=identifier, accept_bullets=p.accept_bullets
)
with write_outputs() as out:
    out.parquet(drops_frame(counters), snakemake.output.drops)
    for counter in counters.values():
        logging.info(
            "%s: %d of %d dropped %s",
            counter.group,
            counter.dropped,
            counter.total,
            dict(counter.reasons),
        )
        counter.check(p.max_drop_rate)
    out.table(parsed, snakemake.output.parsed, p.schemas["out"])
