"""Rule blend_score: SEM-B / SEM-W of one model's BLEnD answers, per run and per question,
through the blend benchmark folder (polyculture.evals.blend)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.blend import format_scores
from polyculture.evals import spec_from_settings
from polyculture.evals.blend import per_question_table, run_scores, workflow_responses
from polyculture.evals.tables import score_benchmark
from polyculture.io import read_table, write_outputs

p, model = snakemake.params, snakemake.wildcards.blend_model
spec = spec_from_settings(p.settings)
items = spec.implementation().items(spec.settings)
answers = pl.concat([read_table(f, p.schemas["answers"]) for f in snakemake.input.answers])
responses = workflow_responses(items, answers, f"answers of {model}")
per_item, _ = score_benchmark(spec, items, responses, model)
scores = run_scores(per_item)
with write_outputs() as out:
    out.table(scores, snakemake.output.scores, p.schemas["scores"])
    out.table(
        per_question_table(per_item), snakemake.output.per_question, p.schemas["per_question"]
    )
    logging.info("scores of %s:\n%s", model, format_scores(scores))
