"""Rule ingest_statements: CANDLE / CultureAtlas sources → filtered statements."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.consensus.statements import ingest, load_source_table
from polyculture.io import write_outputs

p = snakemake.params
schemas = {"candle": p.candle_schema, "cultureatlas": p.cultureatlas_schema}
tables = [(s, *load_source_table(s, p.download_dir, schemas[s["format"]])) for s in p.sources]
statements, drops = ingest(
    tables,
    min_combined_score=p.candle["min_combined_score"],
    subject_types=p.candle["subject_types"],
    min_per_country=p.min_per_country,
    max_per_country=p.max_per_country,
    on_unknown_country=p.on_unknown_country,
    seed=p.seed,
)
logging.info(
    "%d statements about %d countries", statements.height, statements["country"].n_unique()
)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, None)
    out.table(statements, snakemake.output.statements, p.schema)
