"""Rule wvs_human_consistency: Pearson correlation between repeated respondent draws."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import read_table
from polyculture.wvs.polarity import consistency_summary, human_consistency
from polyculture.wvs.summary import write_checked

p = snakemake.params
answers = read_table(snakemake.input.answers, p.schemas["answers"])
pairs = human_consistency(
    answers, n_draws=p.n_draws, draw_size=p.draw_size, seed=p.seed, min_topics=p.min_topics
)
summary = consistency_summary(pairs, p.n_draws, p.draw_size)
logging.info("human self-consistency band:\n%s", summary)
write_checked(pairs, snakemake.output.pairs, p.schemas["pairs"])
write_checked(summary, snakemake.output.summary, p.schemas["summary"])
