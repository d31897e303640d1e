"""The paper's remaining figures: per-language alignment bars against local countries, the US,
the language's speakers, English speakers and everyone (Figs. 6-8), residual plots of the two
regressions (Fig. 9), and Fig. 4's alignment adjusted for self-consistency as released.

Fig. 4 of the paper plots, per model × language, not the raw alignment but the coefficient of
``language:model_name`` in the OLS fit ``alignment ~ 0 + consistency:language +
language:model_name`` on the replicate rows (released scripts/plot_multilingual_benchmarks.py,
``calculate_adjusted_alignments``: 100 refits on rows resampled with replacement; the error bars
span all of them). :func:`adjusted_alignment` computes that from the mixed model's replicate
observations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl
import statsmodels.formula.api as smf

from polyculture.plots import plt, save_figure
from polyculture.wvs.alignment_figures import _message_figure, family_colors

ADJUSTMENT_FORMULA = "alignment ~ 0 + consistency:language + language:model"


def adjusted_alignment(observations: pl.DataFrame, *, rounds: int, seed: int) -> pl.DataFrame:
    """Consistency-adjusted alignment per model × language, as the released Fig. 4: the
    ``language:model`` coefficients of ``ADJUSTMENT_FORMULA`` fitted by OLS on the replicate
    observations (columns model, family, language, alignment, consistency), and their range and
    2.5-97.5% percentiles over `rounds` refits on rows resampled with replacement (seeded).
    Columns: model, family, language, adjusted, boot_min, boot_max, boot_low, boot_high."""
    needed = ("model", "family", "language", "alignment", "consistency")
    if any(c not in observations.columns for c in needed):
        observations = pl.DataFrame(
            schema={c: (pl.Float64 if c in needed[3:] else pl.String) for c in needed}
        )
    obs = observations.filter(
        pl.col("alignment").is_not_null()
        & pl.col("alignment").is_not_nan()
        & pl.col("consistency").is_not_null()
        & pl.col("consistency").is_not_nan()
    ).select("model", "family", "language", "alignment", "consistency")
    schema = {
        "model": pl.String,
        "family": pl.String,
        "language": pl.String,
        "adjusted": pl.Float64,
        "boot_min": pl.Float64,
        "boot_max": pl.Float64,
        "boot_low": pl.Float64,
        "boot_high": pl.Float64,
    }
    if obs.height < 3:
        return pl.DataFrame(schema=schema)
    pdf = obs.to_pandas()
    cells = obs.select("model", "family", "language").unique().sort("model", "language")

    def coefs(df) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
        res = smf.ols(ADJUSTMENT_FORMULA, data=df).fit()
        out = {}
        for term, value in res.params.items():
            if ":model[" in term and term.startswith("language["):
                lang = term.split("]")[0][len("language[") :]
                model = term.split(":model[")[1].rstrip("]")
                out[(model, lang)] = float(value)
        return out

    point = coefs(pdf)
    rng = np.random.default_rng(seed)
    boots: dict[tuple[str, str], list[float]] = {k: [] for k in point}
    for _ in range(rounds):
        sample = pdf.iloc[rng.integers(0, len(pdf), size=len(pdf))].reset_index(drop=True)
        for k, v in coefs(sample).items():
            if k in boots:
                boots[k].append(v)
    rows = []
    for model, family, language in cells.iter_rows():
        key = (model, language)
        b = np.asarray(boots.get(key, []), dtype=np.float64)
        rows.append(
            {
                "model": model,
                "family": family,
                "language": language,
                "adjusted": point.get(key),
                "boot_min": float(b.min()) if b.size else None,
                "boot_max": float(b.max()) if b.size else None,
                "boot_low": float(np.quantile(b, 0.025)) if b.size else None,
                "boot_high": float(np.quantile(b, 0.975)) if b.size else None,
            }
        )
    return pl.DataFrame(rows, schema=schema)


def plot_adjusted_vs_capability(
    adjusted: pl.DataFrame, capability: pl.DataFrame, path: str | os.PathLike[str]
) -> None:
    """Fig. 4 as released: consistency-adjusted alignment (range of the refits as error bars)
    against capability, one panel per language, coloured by family."""
    pts = adjusted.join(
        capability.select("model", "language", "capability"), on=["model", "language"]
    )
    if pts.height == 0:
        _message_figure(path, "Adjusted alignment vs capability", "no cell has both")
        return
    languages = sorted(set(pts["language"].to_list()))
    colors = family_colors(pts["family"].to_list())
    cols = min(len(languages), 2)
    rows = int(np.ceil(len(languages) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    for ax, lang in zip(axes.ravel(), languages, strict=False):
        part = pts.filter(pl.col("language") == lang).sort("capability")
        for fam in sorted(set(part["family"].to_list())):
            f = part.filter(pl.col("family") == fam)
            y = f["adjusted"].to_numpy().astype(float)
            lo = np.maximum(0, y - f["boot_min"].fill_null(np.nan).to_numpy().astype(float))
            hi = np.maximum(0, f["boot_max"].fill_null(np.nan).to_numpy().astype(float) - y)
            ax.errorbar(
                f["capability"].to_numpy(),
                y,
                yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
                fmt="o-",
                color=colors[fam],
                label=fam,
                capsize=3,
            )
            for m, x_, y_ in zip(f["model"], f["capability"], y, strict=True):
                ax.annotate(m, (x_, y_), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(lang)
        ax.set_xlabel("multilingual capability")
        ax.set_ylabel("consistency-adjusted alignment")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(languages) :]:
        ax.axis("off")
    fig.suptitle("Consistency-adjusted alignment vs capability (the paper's Fig. 4, as released)")
    save_figure(fig, path, crop=True)


def plot_language_breakdown(
    alignment: pl.DataFrame,
    language: str,
    local_countries: Sequence[str],
    path: str | os.PathLike[str],
    *,
    unit: str,
    us_group: str = "US",
) -> None:
    """The paper's Figs. 6-8 for one language: each model's alignment (bars, bootstrap interval)
    with the local countries and the US (left), the language's speakers and English speakers
    (middle), and all respondents (right)."""
    al = alignment.filter((pl.col("language") == language) & (pl.col("unit") == unit))
    panels = [
        (
            "countries: local vs US",
            "country",
            [*sorted(set(local_countries) - {us_group}), us_group],
        ),
        (
            "language: speakers vs English speakers",
            "language",
            list(dict.fromkeys([language, "en"])),
        ),
        ("global", "global", ["global"]),
    ]
    if al.height == 0:
        _message_figure(path, f"Alignment in {language}", "no alignment rows for this language")
        return
    models = al.select("family", "model").unique().sort("family", "model")["model"].to_list()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, (title, level, groups) in zip(axes, panels, strict=True):
        part = al.filter((pl.col("level") == level) & pl.col("group").is_in(groups))
        present = [g for g in groups if g in set(part["group"].to_list())]
        width = 0.8 / max(len(present), 1)
        for k, g in enumerate(present):
            y, lo, hi = [], [], []
            for m in models:
                r = part.filter((pl.col("model") == m) & (pl.col("group") == g))
                row = r.row(0, named=True) if r.height else None
                v = row["alignment"] if row and row["alignment"] is not None else np.nan
                y.append(v)
                lo.append(max(0.0, v - row["ci_low"]) if row and row["ci_low"] is not None else 0.0)
                hi.append(
                    max(0.0, row["ci_high"] - v) if row and row["ci_high"] is not None else 0.0
                )
            x = np.arange(len(models)) - 0.4 + width * (k + 0.5)
            ax.bar(x, y, width, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)], capsize=2, label=g)
        ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=7)
        ax.set_title(title)
        ax.axhline(0, color="k", lw=0.6)
        if present:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center")
    axes[0].set_ylabel(f"alignment (Spearman, unit '{unit}')")
    fig.suptitle(f"Cultural alignment of each model in '{language}' by reference population")
    save_figure(fig, path, crop=True)


def plot_residuals(observations: pl.DataFrame, path: str | os.PathLike[str], title: str) -> None:
    """Residuals against fitted values of each observation mode's fit (the paper's Fig. 9), with
    a histogram of the residuals."""
    obs = (
        observations.filter(pl.col("residual").is_not_null())
        if "residual" in observations.columns
        else observations.clear()
    )
    if obs.height == 0:
        _message_figure(path, title, "no fitted observations (regression not estimable)")
        return
    modes = sorted(set(obs["mode"].to_list()))
    fig, axes = plt.subplots(len(modes), 2, figsize=(10, 3.6 * len(modes)), squeeze=False)
    for (ax_s, ax_h), mode in zip(axes, modes, strict=True):
        part = obs.filter(pl.col("mode") == mode)
        ax_s.scatter(part["fitted"], part["residual"], s=6, alpha=0.4)
        ax_s.axhline(0, color="k", lw=0.8)
        ax_s.set_xlabel("fitted")
        ax_s.set_ylabel("residual")
        ax_s.set_title(f"{mode}: residuals vs fitted (n = {part.height})", fontsize=9)
        ax_h.hist(part["residual"].to_numpy(), bins=40)
        ax_h.set_xlabel("residual")
        ax_h.set_title(f"{mode}: residual distribution", fontsize=9)
    fig.suptitle(title)
    save_figure(fig, path, crop=True)
