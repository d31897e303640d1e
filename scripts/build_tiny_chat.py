"""Rule build_tiny_chat: build builtin:tiny-chat from the corpus files (input) into its output directory."""

import logging
from contextlib import redirect_stderr
from pathlib import Path

from polyculture.tiny_models import TinyChatSettings, build_tiny_chat

p = snakemake.params
corpus_dir = Path(snakemake.input[0]).parent
with open(snakemake.log[0], "a", encoding="utf-8") as log, redirect_stderr(log):
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")
    build_tiny_chat(corpus_dir, snakemake.output[0], TinyChatSettings(**p.settings), p.seed)
