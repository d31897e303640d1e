"""Rule blend_score: SEM-B / SEM-W of one model's BLEnD answers, per run and per question."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.blend import format_scores, score_generations
from polyculture.io import check_columns, read_table, write_parquet

p = snakemake.params
answers = pl.concat([read_table(f, p.schemas["answers"]) for f in snakemake.input.answers])
scores, per_question = score_generations(
    answers, p.data_dir, max_questions=p.max_questions, rules=p.rules
)
model = pl.lit(snakemake.wildcards.blend_model).alias("model")
scores = scores.select(model, pl.all())
per_question = per_question.select(model, pl.all())
check_columns(scores, p.schemas["scores"], snakemake.output.scores)
check_columns(per_question, p.schemas["per_question"], snakemake.output.per_question)
logging.info("scores of %s:\n%s", snakemake.wildcards.blend_model, format_scores(scores))
write_parquet(per_question, snakemake.output.per_question)
write_parquet(scores, snakemake.output.scores)
