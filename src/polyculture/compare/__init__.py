"""Comparing evaluated models: adapters against their base model on BLEnD and general benchmarks.

- Pairs: an eval model is compared with the entry its `base` names; an eval model with an
  adapter and no `base` with the eval model that lists the same base model without an adapter
  (:func:`pair_models`). A pair is compared on each benchmark both have results for
  (:func:`pairs_with_results`; an API model has no lm-eval results).
- BLEnD: per country, language and prompt template, and per country and language over both
  templates (prompt ``all``: a question's score is its mean over the templates), SEM-B and SEM-W
  of both models on the same valid questions, the difference and a paired bootstrap over
  questions (:func:`polyculture.stats.paired_bootstrap`). Two summary rows per language kind
  (questions in English, ``language_kind`` English; or in each country's own language,
  ``local``; UK and US have none):

  - country ``All`` — the **macro mean**, the headline: the mean of the per-country scores, as
    the paper reports its results (its +5.03 SEM-B is the mean over the 16 regions). Its paired
    bootstrap resamples questions within each country and averages the per-country
    differences (:func:`stratified_paired_bootstrap`), so every country keeps its weight.
  - country ``All (pooled)`` — every country's questions pooled into one sample (larger
    countries weigh more), labelled as such, beside it.
- General benchmarks: per task, and per benchmark over its languages as the macro mean of the
  per-task scores (task ``all``: the paper's Table 2 averages over languages; bootstrap within
  each task) and pooled over items (task ``all (pooled)``).
- Ablation: one row per training variant (full / random_selection / no_region_filter) with the
  macro-mean differences to the base model, and the base model's own scores.
"""

from __future__ import annotations

from polyculture.compare.blend_tables import (
    BLEND_COMPARISON_SCHEMA,
    BLEND_SCORE_SCHEMA,
    blend_question_scores,
    blend_scores,
    compare_blend,
    compared_items,
)
from polyculture.compare.figures import plot_blend, plot_general
from polyculture.compare.general_tables import (
    GENERAL_COMPARISON_SCHEMA,
    GENERAL_SCORE_SCHEMA,
    compare_general,
    general_scores,
    is_summary_task,
    label_task,
)
from polyculture.compare.pairs import (
    ALL,
    ALL_COUNTRIES,
    ALL_POOLED,
    ALL_POOLED_COUNTRIES,
    SUMMARY_COUNTRIES,
    Pair,
    pair_models,
    pairs_with_results,
    stratified_paired_bootstrap,
)
from polyculture.compare.report import ablation_table, markdown_report, published_section

__all__ = [
    "ALL",
    "ALL_COUNTRIES",
    "ALL_POOLED",
    "ALL_POOLED_COUNTRIES",
    "BLEND_COMPARISON_SCHEMA",
    "BLEND_SCORE_SCHEMA",
    "GENERAL_COMPARISON_SCHEMA",
    "GENERAL_SCORE_SCHEMA",
    "Pair",
    "SUMMARY_COUNTRIES",
    "ablation_table",
    "blend_question_scores",
    "blend_scores",
    "compare_blend",
    "compare_general",
    "compared_items",
    "general_scores",
    "is_summary_task",
    "label_task",
    "markdown_report",
    "pair_models",
    "pairs_with_results",
    "plot_blend",
    "plot_general",
    "published_section",
    "stratified_paired_bootstrap",
]
