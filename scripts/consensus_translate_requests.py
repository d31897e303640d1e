"""Rule translate_requests: critique/refine request wordings for every weak language."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.backends.open import open_translator
from polyculture.consensus.dialogues import missing_request_languages, request_table
from polyculture.consensus.tables import write_table
from polyculture.io import read_table

p = snakemake.params
pairs = read_table(snakemake.input.pairs, allow_empty=True)
missing = missing_request_languages(p.requests, pairs["language"].unique().to_list())
translated = {}
if missing and p.translate_missing:
    texts = [p.requests[kind]["en"] for kind, _ in missing]
    with open_translator(p.translator, p.backend) as translator:
        out = translator.translate(texts, "en", [lang for _, lang in missing])
    translated = dict(zip(missing, out, strict=True))
elif missing:
    logging.info("no wording for %s: the English wording is used", missing)
write_table(request_table(p.requests, translated), snakemake.output.requests, p.schema)
