"""Rule benchmark_score: one model's per-item scores on one benchmark, and its unparseable answers."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from polyculture.evals import spec_from_settings
from polyculture.evals.tables import score_benchmark
from polyculture.io import write_outputs

w = snakemake.wildcards
spec = spec_from_settings(snakemake.params.settings)
scores, drops = score_benchmark(
    spec, snakemake.input.item_table, snakemake.input.responses, w.bench_model
)
with write_outputs() as out:
    out.parquet(scores, snakemake.output.scores)
    out.drops([drops], snakemake.output.drops, None)
