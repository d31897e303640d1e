"""Rule wvs_translate_prompts: the English prompt sample in one language."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.io import read_table, write_outputs
from polyculture.wvs.prompts import translate_prompts
from polyculture.wvs.surveys import LanguageIdentifier

p = snakemake.params
language = snakemake.wildcards.language
prompts = read_table(snakemake.input.prompts, p.schemas["in"])
translator = None
if language != "en":
    from polyculture.backends.translation import TranslatorSettings, load_translator

    translator = load_translator(
        TranslatorSettings(**p.translator),
        backend=p.backend["generation"],
        batch_size=p.backend["batch_size"],
        api=p.backend.get("openai"),
    )
identifier = LanguageIdentifier(tuple(p.candidates)) if p.check_language else None
translated, drops = translate_prompts(prompts, language, translator, identifier=identifier)
with write_outputs() as out:
    out.drops([drops], snakemake.output.drops, p.max_drop_rate)
    out.table(translated, snakemake.output.prompts, p.schemas["out"])
