"""Rule generate_questions: K questions per paragraph with country and language (JSON)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.generation import generator_kwargs, load_generator, sampling_from_config
from polyculture.backends.translation import TranslatorSettings, load_translator
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
generator = load_generator(p.generator, **generator_kwargs(p.backend))
sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.questions.sampling")
outputs = generator.generate_json(
    question_conversations(paragraphs, p.prompt, p.k), schema, 1, sampling
)
# an llm translator of the same model reuses the loaded generator
same_model = p.translator["kind"] == "llm" and p.translator.get("model") == p.generator
translator = load_translator(
    TranslatorSettings(**p.translator),
    backend=p.backend["generation"],
    batch_size=p.backend["batch_size"],
    api=p.backend.get("openai"),
    generator=generator if same_model else None,
)
questions, drops = collect_questions(
    paragraphs, outputs, k=p.k, regions=regions, supports=translator.supports
)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(questions, snakemake.output.questions, p.schema)
