"""Rule generate_questions: K questions per paragraph with country and language (JSON)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.generation import sampling_from_config
from polyculture.backends.open import open_generator, open_translator, shares_model
from polyculture.consensus.questions import (
    collect_questions,
    question_conversations,
    question_json_schema,
    region_list,
)
from polyculture.io import read_table, write_outputs

p = snakemake.params
paragraphs = read_table(snakemake.input.paragraphs)
statements = read_table(snakemake.input.statements)
regions = region_list(p.regions, statements["country"].unique().to_list())
schema = question_json_schema(p.k, regions, p.max_chars)
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.questions.sampling")
with open_generator(p.model, p.backend) as generator:
    conversations = question_conversations(paragraphs, p.prompt, p.k)
    outputs = generator.generate_json(conversations, schema, 1, sampling)
    # an llm translator of the same model reuses the loaded generator
    same = generator if shares_model(p.translator, p.model) else None
    with open_translator(p.translator, p.backend, generator=same) as translator:
        questions, drops = collect_questions(
            paragraphs, outputs, k=p.k, regions=regions, supports=translator.supports
        )
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(questions, snakemake.output.questions, p.schema)
