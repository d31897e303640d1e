"""Rule wvs_human_consistency: Pearson correlation between repeated respondent draws."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import read_table, write_outputs
from polyculture.wvs.polarity import consistency_summary, human_consistency

p = snakemake.params
answers = read_table(snakemake.input.answers, p.schemas["answers"])
pairs = human_consistency(
    answers, n_draws=p.n_draws, draw_size=p.draw_size, seed=p.seed, min_topics=p.min_topics
)
summary = consistency_summary(pairs, p.n_draws, p.draw_size)
logging.info("human self-consistency band:\n%s", summary)
with write_outputs() as out:
    out.table(pairs, snakemake.output.pairs, p.schemas["pairs"])
    out.table(summary, snakemake.output.summary, p.schemas["summary"])
