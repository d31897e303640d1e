"""Rule benchmark_compare: one benchmark's aggregates, paired comparisons and summaries."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from polyculture.evals import spec_from_settings
from polyculture.evals.tables import compare_benchmark
from polyculture.io import write_outputs

p = snakemake.params
spec = spec_from_settings(p.settings)
result = compare_benchmark(
    spec,
    dict(zip(p.models, snakemake.input.scores, strict=True)),
    p.pairs,
    n_boot=p.n_boot,
    seed=p.seed,
    alpha=p.alpha,
    loaded=p.loaded,
)
with write_outputs() as out:
    out.parquet(result.aggregates, snakemake.output.aggregates)
    out.parquet(result.comparison, snakemake.output.comparison)
    out.json(result.summary, snakemake.output.json)
    out.text(result.markdown, snakemake.output.markdown)
