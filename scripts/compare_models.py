"""Rule compare_models: adapters vs base models on BLEnD and general benchmarks (tables, figures)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


import polars as pl

from polyculture import compare as cmp
from polyculture.backends.generation.base import adapter_load_notes
from polyculture.general_eval import ITEM_SCHEMA, task_specs
from polyculture.io import read_table, write_outputs

p, out = snakemake.params, snakemake.output
pairs = [cmp.Pair(**d) for d in p.pairs]
boot = {"n_boot": p.n_boot, "seed": p.seed, "alpha": p.alpha}
per_q = pl.concat([read_table(f, p.schemas["per_question"]) for f in snakemake.input.per_question])
questions = cmp.blend_question_scores(per_q)
blend_scores = cmp.blend_scores(questions)
blend_cmp = cmp.compare_blend(questions, pairs, **boot)
metrics = {s.task: s.metric for s in task_specs(p.tasks)}
item_tables = [read_table(f, p.schemas["items"]) for f in snakemake.input.item_scores]
items = cmp.compared_items(
    pl.concat(item_tables) if item_tables else pl.DataFrame(schema=ITEM_SCHEMA), metrics
)
general_scores = cmp.general_scores(items)
general_pairs, general_notes = cmp.pairs_with_results(
    pairs, p.general_models, "the general benchmarks"
)
general_cmp = cmp.compare_general(items, general_pairs, **boot)
ablation = cmp.ablation_table(
    blend_cmp, general_cmp, blend_scores, general_scores, pairs, p.ablation
)
tables = {
    "blend_scores": blend_scores,
    "blend_comparison": blend_cmp,
    "general_scores": general_scores,
    "general_comparison": general_cmp,
}
with write_outputs() as files:
    for key, table in tables.items():
        files.table(table, out[key], p.schemas[key])
    files.parquet(ablation, out.ablation)
    files.text(
        cmp.markdown_report(
            blend_scores, blend_cmp, general_scores, general_cmp, ablation,
            alpha=p.alpha, n_boot=p.n_boot, notes=[*p.notes, *general_notes, *adapter_load_notes(p.adapters)], published=p.published,
        ),
        out.markdown,
    )  # fmt: skip
    cmp.plot_blend(blend_scores, blend_cmp, files.file(out.blend_figure), alpha=p.alpha)
    cmp.plot_general(general_scores, general_cmp, files.file(out.general_figure), alpha=p.alpha)
