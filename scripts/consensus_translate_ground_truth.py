"""Rule translate_ground_truth: g* into the weaker language (always, or skipped where it already
is in it: consensus.ground_truth.skip_same_language)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.open import open_translator
from polyculture.consensus.critiques import translate_ground_truth
from polyculture.io import read_table, write_outputs

p = snakemake.params
ground_truth = read_table(snakemake.input.ground_truth, allow_empty=True)
with open_translator(p.translator, p.backend, lazy=True) as translator:
    table, drops = translate_ground_truth(
        ground_truth,
        translator.translate,
        min_confidence=p.skip_confidence,
        skip_same_language=p.skip_same_language,
    )
drops.group = snakemake.wildcards.selection
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(table, snakemake.output.translated, p.schema)
