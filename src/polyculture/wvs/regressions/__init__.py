"""Stage 9: the mixed-effects model of alignment (RQ1) and the OLS model of US-centric bias
(RQ2), each in two observation modes.

RQ1 (paper Eq. 1): alignment of model m in language l ~ consistency + capability × family ×
language, random intercept per model (statsmodels ``mixedlm``; formula from the config).
RQ2 (paper Eq. 2): alignment ~ US × model × language over the alignments of each model ×
language with the US and with the language's local countries (OLS), a uniform-random responder
as the reference model (the released analysis's baseline).

Observation modes (``mode`` column of every output):

- ``replicates`` — as released: each of R bootstrap replicates (responses resampled with
  replacement per model × language) contributes one row per model × language (× group), and the
  regression's model-based standard errors treat the R rows as independent. They are not: the
  rows are resamples of the same responses, so the effective sample is the number of model ×
  language cells, and the standard errors shrink like 1/√R whatever the data say.
- ``cluster_bootstrap`` — sound: one observation per model × language (× group), computed on
  all responses; the point estimate is the fit on these observations; uncertainty comes from
  refitting on B cluster-bootstrap replicates (topics resampled with replacement — the same draw
  for every model and language, each bringing all its responses), giving a percentile interval, a
  bootstrap standard error (z = coef / se) and a two-sided bootstrap p-value.

Coefficient tables: term, coef, std_err, z, p, ci_low, ci_high, mode, family, language, model
(the last three parsed from the term name where it names them).
"""

from __future__ import annotations

from polyculture.wvs.regressions.fitting import (
    COEF_COLUMNS,
    COEF_SCHEMA,
    KINDS,
    Design,
    Fit,
    NotEstimable,
    bootstrap_frame,
    coefficient_frame,
    fit_design,
    is_significant,
    parse_terms,
    refit_replicates,
    term_regex,
    with_residuals,
    without_clock,
)
from polyculture.wvs.regressions.observations import (
    BASELINE_FAMILY,
    BASELINE_MODEL,
    RegressionSpec,
    add_uniform_baseline,
    drop_terms,
    missing_cells,
    mixed_observations,
    needed_levels,
    released_join_level,
    us_observations,
    usable_rows,
    uses_consistency,
)
from polyculture.wvs.regressions.stage import (
    ModeResult,
    StageResult,
    not_estimable_reason,
    regression_stage,
    released_formula_note,
    run_cluster_mode,
    run_regression,
    run_replicates_mode,
    summary_text,
)

__all__ = [
    "BASELINE_FAMILY",
    "BASELINE_MODEL",
    "COEF_COLUMNS",
    "COEF_SCHEMA",
    "Design",
    "Fit",
    "KINDS",
    "ModeResult",
    "NotEstimable",
    "RegressionSpec",
    "StageResult",
    "add_uniform_baseline",
    "bootstrap_frame",
    "coefficient_frame",
    "drop_terms",
    "fit_design",
    "is_significant",
    "missing_cells",
    "mixed_observations",
    "needed_levels",
    "not_estimable_reason",
    "parse_terms",
    "refit_replicates",
    "regression_stage",
    "released_formula_note",
    "released_join_level",
    "run_cluster_mode",
    "run_regression",
    "run_replicates_mode",
    "summary_text",
    "term_regex",
    "us_observations",
    "usable_rows",
    "uses_consistency",
    "with_residuals",
    "without_clock",
]
