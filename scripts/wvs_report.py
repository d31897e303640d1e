"""Rule wvs_report: the WVS tables a person reads (polarity, human band, responses, drops)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import polars as pl

from polyculture.io import read_table, write_outputs
from polyculture.wvs.summary import drops_report, polarity_wide, read_parts, response_counts
from polyculture.wvs.topics import load_topics

i, o = snakemake.input, snakemake.output
topics = load_topics(i.topics)
# the population tables exist where the WVS microdata do (not with a given ground truth)
population = "polarity" in i.keys()  # noqa: SIM118 (a Namedlist: `in` looks at the paths)
responses = read_parts(i.responses, None)
parsed = read_parts(i.parsed, None)
scored = read_parts(i.scored, None)
drops = [read_table(path, allow_empty=True) for path in i.drops]
with write_outputs() as out:
    if population:
        consistency = read_table(i.consistency).with_columns(pl.col(pl.Float64).round(4))
        out.tsv(polarity_wide(read_table(i.polarity), topics), o.polarity)
        out.tsv(consistency, o.consistency)
    out.tsv(response_counts(responses, parsed, scored), o.responses)
    out.tsv(drops_report(drops), o.drops)
