"""The comparison figures: grouped bars of adapter and base scores on BLEnD and the general
benchmarks."""

from __future__ import annotations

import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import polars as pl

from polyculture.compare.general_tables import is_summary_task
from polyculture.compare.pairs import ALL, SUMMARY_COUNTRIES

_Label = TypeVar("_Label", bound=Hashable)  # what a bar of a grouped bar chart stands for


def _grouped_bars(
    ax: Any,
    models: Sequence[str],
    labels: Sequence[_Label],
    values: Mapping[str, Mapping[_Label, float]],
    starred: Collection[tuple[str, _Label]],
    *,
    star_offset: float,
) -> None:
    """One bar per model side by side at each label (0 where a model has no value), a star
    `star_offset` above each bar whose (model, label) is in `starred`."""
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        xs = [k + (i - (len(models) - 1) / 2) * width for k in range(len(labels))]
        ys = [values[m].get(lab, 0.0) for lab in labels]
        ax.bar(xs, ys, width=width, label=m)
        for x, y, lab in zip(xs, ys, labels, strict=True):
            if (m, lab) in starred:
                ax.text(x, y + star_offset, "*", ha="center", va="bottom", fontsize=12)


def plot_blend(
    blend_sc: pl.DataFrame,
    blend_cmp: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    alpha: float,
) -> None:
    """Per-country SEM-B bars (mean over prompt templates) of every model, in English and in
    the local language; a star marks an adapter that differs from its base with p < alpha."""
    from polyculture.plots import plt, save_figure

    data = blend_sc.filter(pl.col("prompt_id") == ALL)
    models = sorted(set(data["model"].to_list()))
    sig = {
        (r["model"], r["country"], r["language_kind"])
        for r in blend_cmp.filter(
            (pl.col("prompt_id") == ALL) & pl.col("significant_sem_b")
        ).iter_rows(named=True)
    }
    kinds = [k for k in ("English", "local") if data.filter(pl.col("language_kind") == k).height]
    fig, axes = plt.subplots(
        len(kinds),
        1,
        figsize=(
            max(6.0, 0.9 * data["country"].n_unique() * max(1, len(models)) / 2 + 3),
            3.2 * len(kinds),
        ),
        squeeze=False,
    )
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        part = data.filter(pl.col("language_kind") == kind)
        countries = sorted(set(part["country"].to_list()) - set(SUMMARY_COUNTRIES)) + list(
            SUMMARY_COUNTRIES
        )
        values = {
            m: {
                r["country"]: r["sem_b"]
                for r in part.filter(pl.col("model") == m).iter_rows(named=True)
            }
            for m in models
        }
        starred = {(m, c) for m, c, k in sig if k == kind}
        _grouped_bars(ax, models, countries, values, starred, star_offset=1)
        ax.set_xticks(range(len(countries)))
        ax.set_xticklabels([c.replace("_", " ") for c in countries], rotation=30, ha="right")
        ax.set_ylabel("SEM-B (%)")
        ax.set_ylim(0, 105)
        ax.set_title(
            f"BLEnD SEM-B, questions in {'English' if kind == 'English' else 'the local language'}"
        )
    axes[0, 0].legend(fontsize=8, loc="upper left", ncols=min(4, len(models)))
    save_figure(fig, path, caption=f"* adapter vs base: paired bootstrap p < {alpha}")


def plot_general(
    general_sc: pl.DataFrame,
    general_cmp: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    alpha: float,
) -> None:
    """Benchmark scores per task (and per benchmark, 'all') of every model; a star marks an
    adapter that differs from its base with p < alpha."""
    from polyculture.plots import plt, save_figure

    models = sorted(set(general_sc["model"].to_list()))
    labels = sorted(
        {(r["benchmark"], r["task"]) for r in general_sc.iter_rows(named=True)},
        key=lambda bt: (bt[0], is_summary_task(bt[1]), bt[1]),
    )
    sig = {
        (r["model"], r["benchmark"], r["task"])
        for r in general_cmp.filter(pl.col("significant")).iter_rows(named=True)
    }
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(labels) * max(1, len(models)) / 2 + 3), 3.6))
    values = {
        m: {
            (r["benchmark"], r["task"]): r["value"]
            for r in general_sc.filter(pl.col("model") == m).iter_rows(named=True)
        }
        for m in models
    }
    starred = {(m, (b, t)) for m, b, t in sig}
    _grouped_bars(ax, models, labels, values, starred, star_offset=0.01)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(
        [f"{b}: {t}" if is_summary_task(t) else t for b, t in labels],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("score (compared metric)")
    ax.set_ylim(0, 1.05)
    ax.set_title("General benchmarks")
    ax.legend(fontsize=8, loc="upper left", ncols=min(4, len(models)))
    save_figure(fig, path, caption=f"* adapter vs base: paired bootstrap p < {alpha}")
