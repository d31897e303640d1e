"""Rule plot_train_loss: the loss curve of one training variant."""

import logging

from polyculture.io import read_table
from polyculture.train import plot_loss

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
table = read_table(snakemake.input.loss, snakemake.params.schema)
plot_loss(table, snakemake.output.figure, snakemake.params.title)
