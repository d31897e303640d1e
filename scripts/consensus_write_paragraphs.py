"""Rule write_paragraphs: model M turns each statement into a knowledge paragraph."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator
from polyculture.consensus.questions import collect_paragraphs, paragraph_conversations
from polyculture.io import read_table, write_outputs

p = snakemake.params
statements = read_table(snakemake.input.statements)
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.paragraphs.sampling")
with open_generator(p.model, p.backend) as generator:
    outputs = generator.generate(paragraph_conversations(statements, p.prompt), 1, sampling)
paragraphs, drops = collect_paragraphs(statements, outputs)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(paragraphs, snakemake.output.paragraphs, p.schema)
