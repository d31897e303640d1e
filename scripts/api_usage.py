"""Rule api_usage: the API usage files of every job (beside their outputs), summed per rule and
model, with a total."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging
from pathlib import Path

from polyculture.backends.generation.openai import summarize_usage
from polyculture.io import write_text

results = snakemake.params.results
paths = sorted(Path(results).rglob("*.api-usage.json"))
table = summarize_usage(paths, results, snakemake.params.rules)
logging.info("%d usage files, %d rows", len(paths), table.height)
write_text(table.write_csv(separator="\t"), snakemake.output.tsv)
