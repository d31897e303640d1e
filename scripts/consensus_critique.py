"""Rule critique: M critiques a sampled weak-side answer against the translated g*, as CulFiT
does (knowledge points of g*, a point-by-point check of the answer, the critique written from the
check) or in one prompt (consensus.critique_method)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import json

import polars as pl

from polyculture.backends.generation import generator_kwargs, load_generator, sampling_from_config
from polyculture.consensus.critiques import (
    collect_critiques,
    collect_knowledge_points,
    collect_point_checks,
    critique_conversations,
    critique_from_checks_conversations,
    knowledge_point_conversations,
    knowledge_points_schema,
    pick_weak_answers,
    point_check_conversations,
    point_check_groups,
    point_checks_schema,
)
from polyculture.consensus.tables import read_tables
from polyculture.io import read_table, write_outputs

p = snakemake.params
table = pick_weak_answers(
    read_table(snakemake.input.translated, allow_empty=True),
    read_table(snakemake.input.samples, allow_empty=True),
    read_tables(snakemake.input.responses, None),
    p.seed,
)
counters = []
generator = None
if table.height:
    generator = load_generator(p.generator, **generator_kwargs(p.backend))
    sampling = sampling_from_config(p.stage["sampling"], p.seed, key="consensus.critique.sampling")
if p.method == "culfit":
    culfit = p.culfit
    outputs = []
    if table.height:
        outputs = generator.generate_json(
            knowledge_point_conversations(table, culfit["knowledge_points_prompt"]),
            knowledge_points_schema(culfit["max_knowledge_points"], culfit["max_chars"]),
            1,
            sampling,
        )
    table, drops = collect_knowledge_points(table, outputs)
    counters.append(drops)
    outputs = [None] * table.height
    conversations = point_check_conversations(table, culfit["check_prompt"]) if table.height else []
    for n_points, rows in point_check_groups(table).items():
        replies = generator.generate_json(
            [conversations[i] for i in rows],
            point_checks_schema(n_points, culfit["max_chars"]),
            1,
            sampling,
        )
        for i, reply in zip(rows, replies, strict=True):
            outputs[i] = reply
    table, drops = collect_point_checks(table, outputs)
    counters.append(drops)
    outputs = []
    if table.height:
        outputs = generator.generate(
            critique_from_checks_conversations(table, culfit["critique_prompt"]), 1, sampling
        )
    table = table.with_columns(
        pl.Series(
            "knowledge_points",
            [json.dumps(pts, ensure_ascii=False) for pts in table["knowledge_points"].to_list()],
            dtype=pl.String,
        )
    )
elif table.height:
    outputs = generator.generate(critique_conversations(table, p.prompt), 1, sampling)
else:
    outputs = []
if generator is not None:
    generator.close()
critiques, drops = collect_critiques(table, outputs)
counters.append(drops)
for c in counters:
    c.group = snakemake.wildcards.selection
with write_outputs() as out:
    out.drops(counters, snakemake.output.drops, p.stage["max_drop_rate"])
    out.table(critiques, snakemake.output.critiques, p.schema)
