"""Rule critique: M critiques a sampled weak-side answer against the translated g*, as CulFiT
does (knowledge points of g*, a point-by-point check of the answer, the critique written from the
check) or in one prompt (consensus.critique_method); the loop is
polyculture.consensus.critiques.critique_weak_answers."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.consensus.critiques import critique_weak_answers, pick_weak_answers
from polyculture.consensus.tables import read_tables
from polyculture.io import read_table, write_outputs

p = snakemake.params
table = pick_weak_answers(
    read_table(snakemake.input.translated, allow_empty=True),
    read_table(snakemake.input.samples, allow_empty=True),
    read_tables(snakemake.input.responses, None),
    p.seed,
)
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.critique.sampling")
with open_generator(p.model, p.backend, load=table.height > 0) as generator:
    critiques, counters = critique_weak_answers(
        generator, table, p.method, p.prompt, p.culfit, sampling if generator is not None else None
    )
for c in counters:
    c.group = snakemake.wildcards.selection
with write_outputs() as out:
    out.drops(counters, snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(critiques, snakemake.output.critiques, p.schema)
