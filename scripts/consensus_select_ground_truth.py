"""Rule select_ground_truth: stronger side and g* for one selection mode."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.consensus.ground_truth import (
    attach_texts,
    select_ground_truth,
    selected_responses,
)
from polyculture.consensus.tables import write_table
from polyculture.io import read_table

p = snakemake.params
selection = select_ground_truth(
    read_table(snakemake.input.consistency, allow_empty=True),
    read_table(snakemake.input.samples, allow_empty=True),
    selection=snakemake.wildcards.selection,
    seed=p.seed,
)
table = attach_texts(
    selection,
    read_table(snakemake.input.pairs, allow_empty=True),
    selected_responses(selection, snakemake.input.responses),
)
logging.info("strong sides: %s", dict(table["strong_side"].value_counts().iter_rows()))
write_table(table, snakemake.output.ground_truth, p.schema)
