"""Rule run_summary: the run's headline tables in Markdown (polyculture.summary)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from pathlib import Path

from polyculture.io import atomic_path
from polyculture.summary import summary_markdown

inputs = {name: Path(path) for name, path in snakemake.input.items()}
tables = {n: p for n, p in inputs.items() if not n.startswith("benchmark_")}
benchmarks = sorted(p for n, p in inputs.items() if n.startswith("benchmark_"))
with atomic_path(Path(snakemake.output[0])) as tmp:
    Path(tmp).write_text(summary_markdown(tables, benchmarks=benchmarks), encoding="utf-8")
