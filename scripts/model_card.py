"""Rule model_card: release/<variant>/ = the adapter's files and a model card with this run's
training data, losses and evaluation results."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import json
import logging

import polars as pl

from polyculture.io import read_table, read_text_utf8
from polyculture.model_card import release_card, write_release

i, p = snakemake.input, snakemake.params


def table(name, schema=None):
    """An evaluation table the card reads, or None where this run has none."""
    path = i.get(name)
    if path is None:
        return None
    return read_table(path, p.schemas[name]) if schema else pl.read_parquet(path)


summary = json.loads(read_text_utf8(i.summary))
card = release_card(
    summary=summary,
    base_model=p.base_model,
    license=p.license,
    tags=p.tags,
    datasets=p.datasets,
    models=p.models,
    base_eval_model=p.base_eval_model,
    blend_scores=table("blend_scores", schema=True),
    general_scores=table("general_scores", schema=True),
    alignment=table("alignment"),
    consistency=table("consistency"),
    alignment_unit=p.alignment_unit,
    blend_dataset=p.blend_dataset,
    run_name=p.run_name,
    base_model_path=p.base_model_path,
    benchmarks=[json.loads(read_text_utf8(f)) for n, f in i.items() if n.startswith("benchmark_")],
)
write_release(i.adapter, card, snakemake.output.release)
logging.info("model card of %s: %d characters", summary["group"], len(card))
