"""Rule blend_fetch: download the BLEnD release (questions, annotations, prompts) from the hub."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.blend import fetch_blend

p = snakemake.params
fetch_blend(p.dataset, snakemake.output.data, revision=p.revision, countries=p.countries)
