"""Rule translate_questions: English questions → local language → bilingual pairs."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.questions import collect_pairs
from polyculture.consensus.tables import write_drops, write_table
from polyculture.io import read_table
from polyculture.translate import TranslatorSettings, load_translator

p = snakemake.params
questions = read_table(snakemake.input.questions, allow_empty=True)
translator = load_translator(
    TranslatorSettings(**p.translator),
    backend=p.backend["generation"],
    batch_size=p.backend["batch_size"],
    api=p.backend.get("openai"),
)
texts = questions["question_en"].to_list()
translations = translator.translate(texts, "en", questions["language"].to_list()) if texts else []
pairs, drops = collect_pairs(questions, translations)
write_drops([drops], snakemake.output.drops)
drops.check(p.max_drop_rate)
write_table(pairs, snakemake.output.pairs, p.schema)
