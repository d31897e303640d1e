"""Rule translate_questions: English questions → local language → bilingual pairs."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.translation import TranslatorSettings, load_translator
from polyculture.consensus.questions import collect_pairs
from polyculture.io import read_table, write_outputs

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
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(pairs, snakemake.output.pairs, p.schema)
