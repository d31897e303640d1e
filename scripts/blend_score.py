"""Rule blend_score: SEM-B / SEM-W of one model's BLEnD answers, per run and per question."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.blend import format_scores, score_generations
from polyculture.io import read_table, write_outputs

p = snakemake.params
answers = pl.concat([read_table(f, p.schemas["answers"]) for f in snakemake.input.answers])
scores, per_question = score_generations(
    answers, p.data_dir, max_questions=p.max_questions, rules=p.rules
)
model = pl.lit(snakemake.wildcards.blend_model).alias("model")
scores = scores.select(model, pl.all())
per_question = per_question.select(model, pl.all())
with write_outputs() as out:
    out.table(scores, snakemake.output.scores, p.schemas["scores"])
    out.table(per_question, snakemake.output.per_question, p.schemas["per_question"])
    logging.info("scores of %s:\n%s", snakemake.wildcards.blend_model, format_scores(scores))
