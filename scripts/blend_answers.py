"""Rule blend_answers: one eval model's answers to one country, out of its engine's table."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.blend.engine import member_answers
from polyculture.io import write_outputs

p, w = snakemake.params, snakemake.wildcards
table = pl.read_parquet(snakemake.input.answers)
answers, drops = member_answers(table, w.blend_model, w.blend_country)
logging.info("%d answers, %d empty", answers.height, drops.dropped)
with write_outputs() as out:
    out.table(answers, snakemake.output.answers, p.schema)
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
