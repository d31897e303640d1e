"""Rule critique: M critiques a sampled weak-side answer against the translated g*."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.critiques import (
    collect_critiques,
    critique_conversations,
    pick_weak_answers,
)
from polyculture.consensus.tables import read_tables, write_drops, write_table
from polyculture.io import read_table
from polyculture.llm import generator_kwargs, load_generator, sampling_from_config

p = snakemake.params
table = pick_weak_answers(
    read_table(snakemake.input.translated, allow_empty=True),
    read_table(snakemake.input.samples, allow_empty=True),
    read_tables(snakemake.input.responses, None),
    p.seed,
)
outputs = []
if table.height:
    generator = load_generator(p.generator, **generator_kwargs(p.backend))
    sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.critique.sampling")
    outputs = generator.generate(critique_conversations(table, p.prompt), 1, sampling)
critiques, drops = collect_critiques(table, outputs)
drops.group = snakemake.wildcards.selection
write_drops([drops], snakemake.output.drops)
drops.check(p.stage["max_drop_rate"])
write_table(critiques, snakemake.output.critiques, p.schema)
