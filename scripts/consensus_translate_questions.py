"""Rule translate_questions: English questions → local language → bilingual pairs."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.open import open_translator
from polyculture.consensus.questions import collect_pairs
from polyculture.io import read_table, write_outputs

p = snakemake.params
questions = read_table(snakemake.input.questions, allow_empty=True)
texts = questions["question_en"].to_list()
with open_translator(p.translator, p.backend) as translator:
    translations = (
        translator.translate(texts, "en", questions["language"].to_list()) if texts else []
    )
pairs, drops = collect_pairs(questions, translations)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(pairs, snakemake.output.pairs, p.schema)
