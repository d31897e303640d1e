"""Rule run_summary: the run's headline tables in Markdown (polyculture.summary)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from pathlib import Path

from polyculture.io import atomic_path
from polyculture.summary import summary_markdown

tables = {name: Path(path) for name, path in snakemake.input.items()}
with atomic_path(Path(snakemake.output[0])) as tmp:
    Path(tmp).write_text(summary_markdown(tables), encoding="utf-8")
