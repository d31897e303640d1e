"""Rule write_paragraphs: model M turns each statement into a knowledge paragraph."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.generation import generator_kwargs, load_generator, sampling_from_config
from polyculture.consensus.questions import collect_paragraphs, paragraph_conversations
from polyculture.io import read_table, write_outputs

p = snakemake.params
statements = read_table(snakemake.input.statements)
generator = load_generator(p.generator, **generator_kwargs(p.backend))
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.paragraphs.sampling")
outputs = generator.generate(paragraph_conversations(statements, p.prompt), 1, sampling)
paragraphs, drops = collect_paragraphs(statements, outputs)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(paragraphs, snakemake.output.paragraphs, p.schema)
