"""Rule alignment_paper_figures: per-language alignment bars (the paper's Figs. 6-8), residual
plots of both regressions (Fig. 9) and consistency-adjusted alignment against capability as
released (Fig. 4)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging
from pathlib import Path

import polars as pl

from polyculture.io import write_parquet
from polyculture.wvs.paper_figures import (
    adjusted_alignment,
    plot_adjusted_vs_capability,
    plot_language_breakdown,
    plot_residuals,
)

i, p, o = snakemake.input, snakemake.params, snakemake.output
alignment = pl.read_parquet(i.alignment)
countries = pl.read_parquet(i.country_languages)
out = Path(o.breakdown)
out.mkdir(parents=True, exist_ok=True)
for language in sorted(set(alignment["language"].to_list())):
    local = countries.filter(pl.col("language") == language)["country"].to_list()
    plot_language_breakdown(
        alignment, language, local, out / f"{language}.png", unit=p.unit, us_group=p.us_group
    )
mixed = pl.read_parquet(i.mixed_observations)
us = pl.read_parquet(i.us_observations)
plot_residuals(mixed, o.mixed_residuals, "Mixed model (RQ1): residuals")
plot_residuals(us, o.us_residuals, "US-bias model (RQ2): residuals")
replicate_rows = (
    mixed.filter(pl.col("mode") == "replicates") if "mode" in mixed.columns else mixed.clear()
)
adjusted = adjusted_alignment(replicate_rows, rounds=p.rounds, seed=p.seed)
logging.info("consistency-adjusted alignment:\n%s", adjusted)
write_parquet(adjusted, o.adjusted)
plot_adjusted_vs_capability(adjusted, pl.read_parquet(i.capability), o.adjusted_figure)
