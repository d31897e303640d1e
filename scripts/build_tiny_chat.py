"""Rule build_tiny_chat: build builtin:tiny-chat from the corpus files (input) into its output directory."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from pathlib import Path

from polyculture.backends.builtin.tiny_models import TinyChatSettings, build_tiny_chat

p = snakemake.params
corpus_dir = Path(snakemake.input[0]).parent
build_tiny_chat(corpus_dir, snakemake.output[0], TinyChatSettings(**p.settings), p.seed)
