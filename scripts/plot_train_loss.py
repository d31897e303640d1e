"""Rule plot_train_loss: the loss curve of one training variant."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.io import read_table
from polyculture.train import plot_loss

table = read_table(snakemake.input.loss, snakemake.params.schema)
plot_loss(table, snakemake.output.figure, snakemake.params.title)
