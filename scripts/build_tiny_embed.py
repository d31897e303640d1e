"""Rule build_tiny_embed: build builtin:tiny-embed from the corpus files (input) into its output directory."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

from pathlib import Path

from polyculture.backends.builtin.tiny_models import TinyEmbedSettings, build_tiny_embed

p = snakemake.params
corpus_dir = Path(snakemake.input[0]).parent
build_tiny_embed(corpus_dir, snakemake.output[0], TinyEmbedSettings(**p.settings), p.seed)
