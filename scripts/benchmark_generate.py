"""Rule benchmark_generate: one model answers every item of one benchmark (all groups, one call)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import torch

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.evals.tables import RESPONSE_SCHEMA, generate_responses
from polyculture.io import read_table, write_outputs

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
items = read_table(snakemake.input.item_table, allow_empty=True)
sampling = sampling_from_config(
    p.generation["sampling"], p.seed, key=f"{w.benchmark}.generation.sampling"
)
with open_generator(p.model, p.backend, load=items.height > 0) as generator:
    responses, drops = generate_responses(
        generator,
        items,
        sampling,
        prompt_format=p.generation["prompt_format"],
        stage="benchmark_generate",
        group=f"{w.benchmark}/{w.bench_model}",
    )
with write_outputs() as out:
    out.table(responses, snakemake.output.responses, RESPONSE_SCHEMA)
    out.drops([drops], snakemake.output.drops, p.generation.get("max_drop_rate"))
