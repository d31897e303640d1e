"""Rule benchmark_responses: one eval model's responses to a benchmark, out of its engine's table."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from polyculture.evals.tables import RESPONSE_SCHEMA, model_responses
from polyculture.io import write_outputs

w = snakemake.wildcards
responses, drops = model_responses(snakemake.input.responses, w.benchmark, w.bench_model)
with write_outputs() as out:
    out.table(responses, snakemake.output.responses, RESPONSE_SCHEMA)
    out.drops([drops], snakemake.output.drops, snakemake.params.max_drop_rate)
