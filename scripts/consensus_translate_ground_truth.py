"""Rule translate_ground_truth: g* into the weaker language (always, or skipped where it already
is in it: consensus.ground_truth.skip_same_language)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.translation import TranslatorSettings, load_translator
from polyculture.consensus.critiques import translate_ground_truth
from polyculture.io import read_table, write_outputs

p = snakemake.params
ground_truth = read_table(snakemake.input.ground_truth, allow_empty=True)
translator = None


def translate(texts, sources, targets):
    global translator
    translator = translator or load_translator(
        TranslatorSettings(**p.translator),
        backend=p.backend["generation"],
        batch_size=p.backend["batch_size"],
        api=p.backend.get("openai"),
    )
    return translator.translate(texts, sources, targets)


table, drops = translate_ground_truth(
    ground_truth,
    translate,
    min_confidence=p.skip_confidence,
    skip_same_language=p.skip_same_language,
)
drops.group = snakemake.wildcards.selection
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(table, snakemake.output.translated, p.schema)
