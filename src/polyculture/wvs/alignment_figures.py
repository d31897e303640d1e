"""Figures of the WVS alignment analysis (stages 7-10): country correlation heatmap, model
self-consistency against the human band, alignment against capability per language,
regression coefficients with intervals in both observation modes, and specification curves.

Every function takes tidy tables (as the rules write them) and a path; nothing here computes a
statistic that a table does not already hold."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl

from polyculture.plots import plt, save_figure

MODE_STYLE = {
    "replicates": {
        "color": "#d62728",
        "marker": "s",
        "label": "replicates as observations (as released)",
    },
    "cluster_bootstrap": {
        "color": "#1f77b4",
        "marker": "o",
        "label": "one obs. per cell, cluster bootstrap",
    },
}
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _message_figure(path: str | os.PathLike[str], title: str, message: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10)
    save_figure(fig, path, crop=True)


def family_colors(families: Sequence[str]) -> dict[str, str]:
    """A fixed colour per family (sorted order)."""
    return {f: _PALETTE[i % len(_PALETTE)] for i, f in enumerate(sorted(set(families)))}


def plot_country_heatmap(corr: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Lower-triangle heatmap of Pearson correlations between populations' polarity vectors."""
    groups = sorted(set(corr["group_a"].to_list()))
    if not groups:
        _message_figure(path, "Country correlations", "no ground truth at country level")
        return
    idx = {g: i for i, g in enumerate(groups)}
    mat = np.full((len(groups), len(groups)), np.nan)
    for a, b, r in corr.select("group_a", "group_b", "correlation").iter_rows():
        mat[idx[a], idx[b]] = np.nan if r is None else r
    masked = np.where(np.tril(np.ones_like(mat, dtype=bool), k=-1), mat, np.nan)
    size = max(4.0, 0.55 * len(groups) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(masked, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(groups)), groups, rotation=90)
    ax.set_yticks(range(len(groups)), groups)
    for i in range(len(groups)):
        for j in range(i):
            if np.isfinite(masked[i, j]):
                ax.text(
                    j,
                    i,
                    f"{masked[i, j]:.2f}".replace("0.", "."),
                    ha="center",
                    va="center",
                    fontsize=7,
                )
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r of polarity across topics")
    ax.set_title("Value polarity: correlation between populations")
    save_figure(fig, path, crop=True)


def plot_self_consistency(
    table: pl.DataFrame,
    band: tuple[float, float],
    path: str | os.PathLike[str],
    band_groups: Sequence[str] = (),
) -> None:
    """Bars: each model's self-consistency per language with its bootstrap interval; crosses:
    the released statistic (Spearman over self-paired joined rows, / 0.955); shaded: the range
    of the survey populations `band_groups` (named under the title)."""
    if table.height == 0:
        _message_figure(path, "Self-consistency", "no model responses")
        return
    languages = sorted(set(table["language"].to_list()))
    models = table.select("family", "model").unique().sort("family", "model")["model"].to_list()
    colors = family_colors(table["family"].to_list())
    fam = dict(zip(table["model"].to_list(), table["family"].to_list(), strict=True))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.6 * len(languages) + 0.25 * len(models) * len(languages)), 4.5)
    )
    lo, hi = band
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"survey populations ({lo:.2f}-{hi:.2f})")
        ax.axhline(lo, color="0.3", ls=":", lw=1)
        ax.axhline(hi, color="0.3", ls="--", lw=1)
    shades = {}
    for f in sorted(set(fam.values())):
        fm = [m for m in models if fam[m] == f]
        for k, m in enumerate(fm):
            shades[m] = 0.45 + 0.55 * (k + 1) / len(fm)
    for j, m in enumerate(models):
        part = table.filter(pl.col("model") == m)
        x, y, lo_e, hi_e, rel = [], [], [], [], []
        for i, lang in enumerate(languages):
            r = part.filter(pl.col("language") == lang)
            if r.height == 0:
                continue
            row = r.row(0, named=True)
            x.append(i - 0.4 + width * (j + 0.5))
            y.append(row["consistency"])
            lo_e.append(
                max(0.0, row["consistency"] - row["ci_low"]) if row["ci_low"] is not None else 0.0
            )
            hi_e.append(
                max(0.0, row["ci_high"] - row["consistency"]) if row["ci_high"] is not None else 0.0
            )
            rel.append(row["consistency_released"])
        ax.bar(
            x,
            y,
            width,
            color=colors[fam[m]],
            alpha=shades[m],
            label=m,
            yerr=[lo_e, hi_e],
            capsize=2,
            zorder=2,
        )
        ax.scatter(x, rel, marker="x", color="k", s=14, zorder=3)
    ax.scatter(
        [], [], marker="x", color="k", label="as released (Spearman, self-paired rows, /0.955)"
    )
    ax.set_xticks(range(len(languages)), languages)
    ax.set_ylabel("self-consistency (Pearson r, repeated responses)")
    top = np.nanmax(np.r_[table["consistency_released"].fill_null(np.nan).to_numpy(), 1.0])
    ax.set_ylim(min(0.0, float(np.nanmin(table["consistency"].to_numpy())) - 0.05), top + 0.02)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7)
    title = "Model self-consistency vs the human band"
    if band_groups:
        title += f"\nband: {len(band_groups)} populations ({', '.join(sorted(band_groups))})"
    ax.set_title(title, fontsize=9 if band_groups else None)
    save_figure(fig, path, crop=True)


def plot_alignment_vs_capability(
    points: pl.DataFrame,
    coefficients: pl.DataFrame,
    path: str | os.PathLike[str],
    alpha: float = 0.05,
) -> None:
    """One panel per language: each model's alignment (with its bootstrap interval) against its
    capability, coloured by family, with a least-squares line per family (descriptive); a star
    marks families whose capability term is significant in the cluster-bootstrap fit.

    `points`: model, family, language, capability, alignment, ci_low, ci_high."""
    if points.height == 0:
        _message_figure(
            path, "Alignment vs capability", "no model × language has both alignment and capability"
        )
        return
    languages = sorted(set(points["language"].to_list()))
    colors = family_colors(points["family"].to_list())
    n = len(languages)
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    sig = coefficients.filter(
        (pl.col("mode") == "cluster_bootstrap")
        & pl.col("term").str.starts_with("capability")
        & (pl.col("p") < alpha)
    )
    for k, lang in enumerate(languages):
        ax = axes[k // cols][k % cols]
        part = points.filter(pl.col("language") == lang)
        for fam in sorted(set(part["family"].to_list())):
            fp = part.filter(pl.col("family") == fam).sort("capability")
            x = fp["capability"].to_numpy()
            y = fp["alignment"].to_numpy()
            err = [
                np.clip(y - fp["ci_low"].fill_null(np.nan).to_numpy(), 0, None),
                np.clip(fp["ci_high"].fill_null(np.nan).to_numpy() - y, 0, None),
            ]
            ax.errorbar(x, y, yerr=err, fmt="o", color=colors[fam], capsize=2, label=fam)
            for xi, yi, m in zip(x, y, fp["model"].to_list(), strict=True):
                ax.annotate(m, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
            if len(x) >= 2 and np.ptp(x) > 0:
                slope, icpt = np.polyfit(x, y, 1)
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, icpt + slope * xs, "--", color=colors[fam], alpha=0.7)
                star = sig.filter((pl.col("family") == fam) & (pl.col("language") == lang))
                if star.height:
                    ax.text(
                        xs.mean(),
                        icpt + slope * xs.mean(),
                        "*",
                        color=colors[fam],
                        fontsize=20,
                        ha="center",
                    )
        ax.set_title(lang)
        ax.set_xlabel("multilingual capability")
        ax.set_ylabel("cultural alignment (Spearman)")
        ax.legend(fontsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("Cultural alignment vs multilingual capability")
    fig.tight_layout()
    save_figure(fig, path, crop=True)


def plot_forest(
    coefficients: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    title: str,
    term_pattern: str | None = None,
    panel_by: str | None = None,
    label_column: str = "term",
    empty_message: str = "no coefficients",
) -> None:
    """Coefficients with intervals, one row per term, one marker per observation mode (the
    released replicate mode beside the cluster-bootstrap mode); optionally one panel per value of
    `panel_by` (e.g. language)."""
    coefs = coefficients
    if term_pattern is not None:
        coefs = coefs.filter(pl.col("term").str.contains(term_pattern))
    if coefs.height == 0:
        _message_figure(path, title, empty_message)
        return
    panels = sorted(set(coefs[panel_by].drop_nulls().to_list())) if panel_by else [None]
    n_terms = max(
        coefs.filter(pl.col(panel_by) == p)[label_column].n_unique()
        if p is not None
        else coefs[label_column].n_unique()
        for p in panels
    )
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.8 * len(panels), 0.35 * n_terms + 1.8),
        squeeze=False,
        sharex=True,
    )
    modes = [m for m in MODE_STYLE if m in set(coefs["mode"].to_list())]
    for k, p in enumerate(panels):
        ax = axes[0][k]
        part = coefs if p is None else coefs.filter(pl.col(panel_by) == p)
        labels = sorted(set(part[label_column].to_list()))
        ypos = {t: i for i, t in enumerate(labels)}
        for j, mode in enumerate(modes):
            mp = part.filter(pl.col("mode") == mode)
            style = MODE_STYLE[mode]
            off = (j - (len(modes) - 1) / 2) * 0.25
            y = np.array([ypos[t] + off for t in mp[label_column].to_list()])
            c = mp["coef"].to_numpy()
            lo = np.clip(c - mp["ci_low"].fill_null(np.nan).to_numpy(), 0, None)
            hi = np.clip(mp["ci_high"].fill_null(np.nan).to_numpy() - c, 0, None)
            ax.errorbar(
                c,
                y,
                xerr=[lo, hi],
                fmt=style["marker"],
                color=style["color"],
                capsize=2,
                ms=4,
                label=style["label"] if k == 0 else None,
            )
        ax.axvline(0, color="0.4", lw=1)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        if p is not None:
            ax.set_title(str(p))
        ax.set_xlabel("coefficient (95% interval)")
    fig.suptitle(title)
    fig.legend(loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, path, crop=True)


CHOICE_COLUMNS = ("ground_truth", "unit", "observation", "resample_size", "rounds", "consistency")


def plot_specification_curve(rows: pl.DataFrame, term: str, path: str | os.PathLike[str]) -> None:
    """Specification curve of one term: estimates sorted, with intervals (filled: p < 0.05;
    the default specification ringed), and below, which choice each specification made."""
    rows = rows.sort("coef")
    n = rows.height
    choices = []
    for col in CHOICE_COLUMNS:
        vals = rows[col].to_list()
        uniq = sorted({str(v) for v in vals})
        if len(uniq) > 1 or col in ("observation",):
            choices += [(col, u) for u in uniq]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(max(6.0, 0.28 * n + 3), 3.2 + 0.22 * len(choices)),
        sharex=True,
        gridspec_kw={"height_ratios": [3, max(1, 0.2 * len(choices))]},
    )
    x = np.arange(n)
    c = rows["coef"].to_numpy()
    lo = np.clip(c - rows["ci_low"].fill_null(np.nan).to_numpy(), 0, None)
    hi = np.clip(rows["ci_high"].fill_null(np.nan).to_numpy() - c, 0, None)
    sig = rows["significant"].to_numpy()
    obs = rows["observation"].to_list()
    for i in range(n):
        style = MODE_STYLE.get(obs[i], MODE_STYLE["cluster_bootstrap"])
        top.errorbar(
            x[i],
            c[i],
            yerr=[[lo[i]], [hi[i]]],
            fmt=style["marker"],
            color=style["color"],
            mfc=style["color"] if sig[i] else "white",
            capsize=2,
            ms=5,
        )
    for i in np.flatnonzero(rows["is_default"].to_numpy()):
        top.scatter(x[i], c[i], s=140, facecolors="none", edgecolors="k", lw=1.2, zorder=5)
    top.axhline(0, color="0.4", lw=1)
    top.set_ylabel("estimate (95% interval)")
    top.set_title(f"{term}\nfilled: p < 0.05; ringed: default specification")
    for style in MODE_STYLE.values():
        top.scatter([], [], marker=style["marker"], color=style["color"], label=style["label"])
    top.legend(fontsize=7, loc="best")
    labels = []
    for k, (col, val) in enumerate(choices):
        vals = [str(v) for v in rows[col].to_list()]
        on = np.array([v == val for v in vals])
        bottom.scatter(x[on], np.full(on.sum(), k), marker="|", s=90, color="k")
        labels.append(f"{col}={val}")
    bottom.set_yticks(range(len(choices)), labels, fontsize=7)
    bottom.invert_yaxis()
    bottom.set_xlabel("specification (sorted by estimate)")
    bottom.set_xlim(-0.8, n - 0.2)
    fig.tight_layout()
    save_figure(fig, path, crop=True)
