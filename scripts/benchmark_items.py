"""Rule benchmark_items: a benchmark's items and their prompts."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.evals import ITEM_SCHEMA, spec_from_settings
from polyculture.io import write_outputs

spec = spec_from_settings(snakemake.params.settings)
items = spec.implementation().items(spec.settings)
logging.info("%s: %d items in %d groups", spec.name, items.height, items["group"].n_unique())
with write_outputs() as out:
    out.table(items, snakemake.output.item_table, ITEM_SCHEMA)
