"""Rules mixed_model and us_bias: one regression in the replicate mode (as released) and the
cluster-bootstrap mode (sound), side by side."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

import polars as pl

from polyculture.io import write_outputs
from polyculture.wvs.alignment import load_analysis_data
from polyculture.wvs.alignment_figures import plot_forest
from polyculture.wvs.regressions import RegressionSpec, regression_stage

i, p = snakemake.input, snakemake.params
data = load_analysis_data(i.responses, i.ground_truth, i.country_languages)
capability = pl.read_parquet(i.capability) if hasattr(i, "capability") else None
spec = RegressionSpec(**p.spec)
stage = regression_stage(spec, data, capability, **p.fit, seed=p.seed)
logging.info("%s", stage.summary)
o = snakemake.output
with write_outputs() as out:
    out.parquet(stage.coefficients, o.coefficients)
    out.parquet(stage.observations, o.observations)
    out.text(stage.summary, o.summary)
    out.json(stage.fit, o.fit)
    plot_forest(
        stage.coefficients,
        out.file(o.figure),
        title=p.figure["title"],
        term_pattern=p.figure["terms"],
        panel_by=p.figure["panel_by"],
        label_column=p.figure["label"],
        empty_message=stage.summary,
    )
