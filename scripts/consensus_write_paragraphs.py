"""Rule write_paragraphs: model M turns each statement into a knowledge paragraph."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.questions import collect_paragraphs, paragraph_conversations
from polyculture.consensus.tables import write_drops, write_table
from polyculture.io import read_table
from polyculture.llm import generator_kwargs, load_generator, sampling_from_config

p = snakemake.params
statements = read_table(snakemake.input.statements)
generator = load_generator(p.generator, **generator_kwargs(p.backend))
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.paragraphs.sampling")
outputs = generator.generate(paragraph_conversations(statements, p.prompt), 1, sampling)
paragraphs, drops = collect_paragraphs(statements, outputs)
write_drops([drops], snakemake.output.drops)
drops.check(p.stage["max_drop_rate"])
write_table(paragraphs, snakemake.output.paragraphs, p.schema)
