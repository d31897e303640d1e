"""Rule replication_report: every published regression term beside the reproduced coefficient
under each analysis variant (the rules' fits and every specification), with sign agreement."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import json
import logging

import polars as pl

from polyculture.io import write_outputs
from polyculture.wvs.published import (
    read_published,
    replication_summary,
    replication_table,
    rule_variants,
    speccurve_variants,
)

i, p = snakemake.input, snakemake.params
published = read_published(i.published)
variants = []
for name in ("mixed_model", "us_bias"):
    with open(i[f"{name}_fit"], encoding="utf-8") as fh:
        fit = json.load(fh)
    variants.append(
        rule_variants(
            pl.read_parquet(i[f"{name}_coefficients"]), name, fit.get("formula_name") or name
        )
    )
if hasattr(i, "speccurve"):
    variants.append(speccurve_variants(pl.read_parquet(i.speccurve)))
report = replication_table(published, variants, alpha=p.alpha)
summary = replication_summary(report)
logging.info("replication summary:\n%s", summary)
with write_outputs() as out:
    out.parquet(report, snakemake.output.table)
    out.tsv(report, snakemake.output.table_tsv, float_precision=4)
    out.tsv(summary, snakemake.output.summary, float_precision=3)
