"""Cultural alignment of models with survey populations (stage 7) and the statistics it rests on.

Canonical tables (every input source is normalised to these before any statistic is computed):

- responses: ``model, family, language, question_key, response_id, pro_score`` — one judged
  response (its polarity: pro / (pro + con) of its summaries) per row.
- ground truth: ``level, group, question_key, polarity`` — value polarity of a population;
  level ``country`` (group = country code), ``language`` (group = ISO 639-1 code), ``global``
  (group ``global``) or ``merged`` (group = language: the per-response ground truth a released
  response file carries, where it has one).
- country languages: ``country, language`` — which countries are 'local' to a language.

Alignment is the Spearman correlation between a model's polarity and a population's, per
model × language (a *cell*) × level × group, in one of two units:

- ``topic`` (the paper's definition): the model's polarity of a topic is the mean over its
  responses to that topic; the correlation runs across topics.
- ``response`` (the released code's): every response is paired with its topic's ground truth
  and the correlation runs across responses.

Bootstrap replicates come from one engine, :func:`replicates`, with two schemes:

- ``cluster`` (sound): topics are drawn with replacement — one draw shared by every cell, so the
  dependence between cells that answer the same topics is kept — and each drawn topic brings
  all of the cell's responses to it (resampling responses again within topics would count their
  noise twice). A topic drawn twice forms two clusters.
- ``responses`` (as released): each cell's responses are drawn with replacement (as many as it
  has, or a configured resample size); the topic set is whatever the draw contains.

Self-consistency (stage 8, see :mod:`polyculture.wvs.consistency`) is the Pearson correlation
over all ordered pairs of responses to the same topic (:func:`pair_correlation`); a response is
never paired with itself, and in a bootstrap replicate never with its own duplicates.
"""

from __future__ import annotations

from polyculture.wvs.alignment.bootstrap import (
    REPLICATE_ALIGNMENT_SCHEMA,
    REPLICATE_CONSISTENCY_SCHEMA,
    SCHEMES,
    UNITS,
    Draw,
    ReplicateResult,
    _stable_ints,
    alignment_table,
    cluster_draw,
    full_draw,
    released_copies,
    replicates,
    response_draw,
)
from polyculture.wvs.alignment.correlations import (
    RELEASED_ERROR_RATE,
    bootstrap_pvalue,
    country_correlations,
    is_finite_number,
    masked_ranks,
    pair_correlation,
    pair_ranks,
    pearson_rows,
    percentile_interval,
    released_pair_spearman,
    spearman,
    spearman_rows,
)
from polyculture.wvs.alignment.inputs import (
    COUNTRY_LANGUAGE_COLUMNS,
    GROUND_TRUTH_COLUMNS,
    GROUND_TRUTH_SCHEMA,
    LEVELS,
    RESPONSE_COLUMNS,
    RESPONSE_SCHEMA,
    AnalysisData,
    Cell,
    FloatArray,
    IntArray,
    build_analysis_data,
    check_country_languages,
    check_ground_truth,
    check_responses,
    iter_groups,
    load_analysis_data,
    require_columns,
    summarise_cells,
)

__all__ = [
    "AnalysisData",
    "COUNTRY_LANGUAGE_COLUMNS",
    "Cell",
    "Draw",
    "FloatArray",
    "GROUND_TRUTH_COLUMNS",
    "GROUND_TRUTH_SCHEMA",
    "IntArray",
    "LEVELS",
    "RELEASED_ERROR_RATE",
    "REPLICATE_ALIGNMENT_SCHEMA",
    "REPLICATE_CONSISTENCY_SCHEMA",
    "RESPONSE_COLUMNS",
    "RESPONSE_SCHEMA",
    "ReplicateResult",
    "SCHEMES",
    "UNITS",
    "_stable_ints",
    "alignment_table",
    "bootstrap_pvalue",
    "build_analysis_data",
    "check_country_languages",
    "check_ground_truth",
    "check_responses",
    "cluster_draw",
    "country_correlations",
    "full_draw",
    "is_finite_number",
    "iter_groups",
    "load_analysis_data",
    "masked_ranks",
    "pair_correlation",
    "pair_ranks",
    "pearson_rows",
    "percentile_interval",
    "released_copies",
    "released_pair_spearman",
    "replicates",
    "require_columns",
    "response_draw",
    "spearman",
    "spearman_rows",
    "summarise_cells",
]
