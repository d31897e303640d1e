"""Rule build_training_set: six-turn dialogues, region/language filters, 3:1 mix with general
data, counts per region and language (the paper's Table 4)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.consensus.dialogues import (
    counts_markdown,
    counts_table,
    cultural_records,
    general_pool,
    load_general,
    mix,
    request_lookup,
)
from polyculture.io import read_table, write_outputs

p = snakemake.params
variant = snakemake.wildcards.variant
lookup = request_lookup(read_table(snakemake.input.requests))
cultural, drops = cultural_records(
    read_table(snakemake.input.critiques, allow_empty=True),
    lookup,
    variant=variant,
    region_filter=p.region_filter,
    language_filter=p.language_filter,
)
aya, origin = load_general(p.general, p.aya_schema)
pool, general_drops = general_pool(aya, origin, p.general["languages"])
general_drops.group = variant
records = mix(
    cultural,
    pool,
    cultural_per_general=p.general["cultural_per_general"],
    variant=variant,
    seed=p.seed,
    origin=origin,
)
counts = counts_table(records)
with write_outputs() as out:
    out.table(counts, snakemake.output.counts, p.counts_schema)
    out.drops([drops, general_drops], snakemake.output.drops, None)
    out.text(counts_markdown(counts, variant), snakemake.output.counts_md)
    out.jsonl(records, snakemake.output.train)
