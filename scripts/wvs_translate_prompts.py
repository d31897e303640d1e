"""Rule wvs_translate_prompts: the English prompt sample in one language."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.backends.open import open_translator
from polyculture.io import read_table, write_outputs
from polyculture.wvs.prompts import translate_prompts
from polyculture.wvs.surveys import LanguageIdentifier

p = snakemake.params
language = snakemake.wildcards.language
prompts = read_table(snakemake.input.prompts, p.schemas["in"])
identifier = LanguageIdentifier(tuple(p.candidates)) if p.check_language else None
with open_translator(p.translator, p.backend, load=language != "en") as translator:
    translated, drops = translate_prompts(prompts, language, translator, identifier=identifier)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(translated, snakemake.output.prompts, p.schemas["out"])
