"""Rule build_tiny_embed: build builtin:tiny-embed from the corpus files (input) into its output directory."""

import logging
from contextlib import redirect_stderr
from pathlib import Path

from polyculture.tiny_models import TinyEmbedSettings, build_tiny_embed

p = snakemake.params
corpus_dir = Path(snakemake.input[0]).parent
with open(snakemake.log[0], "a", encoding="utf-8") as log, redirect_stderr(log):
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")
    build_tiny_embed(corpus_dir, snakemake.output[0], TinyEmbedSettings(**p.settings), p.seed)
