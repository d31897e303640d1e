"""Rule benchmark_fetch: download a benchmark's data (data.hub_dataset) into the folder its items
are built from."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from polyculture.evals import spec_from_settings

spec = spec_from_settings(snakemake.params.settings)
spec.implementation().fetch(spec.settings, snakemake.output.data)
spec.implementation().check(spec.settings)
