"""Rule wvs_score: response polarity from the judge's labels; drop responses without a stance."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import read_parts, write_outputs
from polyculture.wvs.stances import score_responses
from polyculture.wvs.surveys import drops_frame

p = snakemake.params
labels = read_parts(snakemake.input.judged, p.schemas["in"])
scored, judge_drops, score_drops = score_responses(labels)
drops = drops_frame(judge_drops).vstack(drops_frame(score_drops))
with write_outputs() as out:
    out.parquet(drops, snakemake.output.drops)
    for counter in judge_drops.values():
        counter.check(p.max_drop_rate["judge"])
    for counter in score_drops.values():
        kept = counter.total - counter.dropped
        logging.info("%s: %d of %d responses kept", counter.group, kept, counter.total)
        counter.check(p.max_drop_rate["score"])
    out.table(scored, snakemake.output.scored, p.schemas["out"])
