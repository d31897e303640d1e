"""Rule blend_fetch: download the BLEnD release (questions, annotations, prompts) from the hub."""

import logging

from polyculture.blend import fetch_blend

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
p = snakemake.params
fetch_blend(p.dataset, snakemake.output.data, revision=p.revision, countries=p.countries)
