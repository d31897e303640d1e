"""The comparison report: the ablation table and the Markdown report with the published numbers
beside ours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from polyculture.compare.general_tables import is_summary_task
from polyculture.compare.pairs import ALL, ALL_COUNTRIES, SUMMARY_COUNTRIES, Pair


def ablation_table(
    blend_cmp: pl.DataFrame,
    general_cmp: pl.DataFrame,
    blend_sc: pl.DataFrame,
    general_sc: pl.DataFrame,
    pairs: Sequence[Pair],
    variants: Sequence[str],
) -> pl.DataFrame:
    """One row per base model compared and per listed training variant: pooled SEM-B (English,
    local) and benchmark scores, with differences to the base and p-values (base rows: none)."""
    benches = sorted(set(general_sc["benchmark"].to_list())) if general_sc.height else []
    kinds = [("English", "en"), ("local", "local")]
    rows = []
    by_variant = {p.variant: p for p in pairs}
    bases = []
    for v in variants:
        if v in by_variant and by_variant[v].base not in bases:
            bases.append(by_variant[v].base)

    def blend_value(model: str, lang: str) -> float | None:
        hit = blend_sc.filter(
            (pl.col("model") == model)
            & (pl.col("country") == ALL_COUNTRIES)
            & (pl.col("language") == lang)
            & (pl.col("prompt_id") == ALL)
        )
        return float(hit["sem_b"][0]) if hit.height else None

    def bench_value(model: str, bench: str) -> float | None:
        hit = general_sc.filter(
            (pl.col("model") == model) & (pl.col("benchmark") == bench) & (pl.col("task") == ALL)
        )
        return float(hit["value"][0]) if hit.height else None

    for base in bases:
        row: dict[str, Any] = {"variant": "base", "model": base, "base": base}
        for kind, lang in kinds:
            row[f"sem_b_{kind}"] = blend_value(base, lang)
            row[f"delta_sem_b_{kind}"] = row[f"p_sem_b_{kind}"] = None
        for bench in benches:
            row[bench] = bench_value(base, bench)
            row[f"delta_{bench}"] = row[f"p_{bench}"] = None
        rows.append(row)
        for v in variants:
            pair = by_variant.get(v)
            if pair is None or pair.base != base:
                continue
            row = {"variant": v, "model": pair.model, "base": base}
            for kind, lang in kinds:
                hit = blend_cmp.filter(
                    (pl.col("model") == pair.model)
                    & (pl.col("country") == ALL_COUNTRIES)
                    & (pl.col("language") == lang)
                    & (pl.col("prompt_id") == ALL)
                )
                row[f"sem_b_{kind}"] = float(hit["sem_b"][0]) if hit.height else None
                row[f"delta_sem_b_{kind}"] = float(hit["delta_sem_b"][0]) if hit.height else None
                row[f"p_sem_b_{kind}"] = float(hit["p_sem_b"][0]) if hit.height else None
            for bench in benches:
                hit = general_cmp.filter(
                    (pl.col("model") == pair.model)
                    & (pl.col("benchmark") == bench)
                    & (pl.col("task") == ALL)
                )
                row[bench] = float(hit["value"][0]) if hit.height else None
                row[f"delta_{bench}"] = float(hit["delta"][0]) if hit.height else None
                row[f"p_{bench}"] = float(hit["p_value"][0]) if hit.height else None
            rows.append(row)
    schema: dict[str, Any] = {"variant": pl.String, "model": pl.String, "base": pl.String}
    for kind, _ in kinds:
        schema |= {
            f"sem_b_{kind}": pl.Float64,
            f"delta_sem_b_{kind}": pl.Float64,
            f"p_sem_b_{kind}": pl.Float64,
        }
    for bench in benches:
        schema |= {bench: pl.Float64, f"delta_{bench}": pl.Float64, f"p_{bench}": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p(p: float | None, alpha: float) -> str:
    if p is None:
        return "–"
    return f"{p:.3f}{' *' if p < alpha else ''}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _model_cells(
    part: pl.DataFrame, models: Sequence[str], column: str, digits: int = 2
) -> list[str]:
    """Each model's `column` in `part` (one row per model), formatted; '–' for a model that has
    no row."""
    vals = {r["model"]: r[column] for r in part.iter_rows(named=True)}
    return [_fmt(vals[m], digits) if m in vals else "–" for m in models]


def markdown_report(
    blend_sc: pl.DataFrame,
    blend_cmp: pl.DataFrame,
    general_sc: pl.DataFrame,
    general_cmp: pl.DataFrame,
    ablation: pl.DataFrame,
    *,
    alpha: float,
    n_boot: int,
    notes: Sequence[str] = (),
    published: Mapping[str, Any] | None = None,
) -> str:
    """The comparison tables as Markdown (scores, adapter vs base, ablation; the published
    headline figures beside the run's where `published` gives them)."""
    models = sorted(set(blend_sc["model"].to_list()) | set(general_sc["model"].to_list()))
    out = [
        "# Model comparison",
        "",
        f"Paired bootstrap over questions (BLEnD) or items (benchmarks), {n_boot:,} resamples; "
        f"`*` marks p < {alpha}. SEM-B/SEM-W in percent; 'all' = mean over the prompt templates. "
        "Headline: country 'All' = **macro mean**, the mean of the per-country scores (as the "
        "paper reports; bootstrap resamples questions within each country); 'All (pooled)' = "
        "every country's questions pooled (larger countries weigh more). Benchmarks: task "
        "'all' = macro mean over the benchmark's languages (tasks), 'all (pooled)' = items "
        "pooled, 'all (CS)' / 'all (CA)' = macro mean over the items Global-MMLU labels "
        "culturally sensitive / culturally agnostic.",
        "",
    ]
    out += [f"> {n}" for n in notes] + ([""] if notes else [])
    if published:
        out += [published_section(published, blend_cmp, general_cmp)]
    out += ["## BLEnD SEM-B per country (mean over prompt templates)", ""]
    wide = blend_sc.filter(pl.col("prompt_id") == ALL)
    rows = []
    for (country, language), part in sorted(
        wide.group_by(["country", "language"]),
        key=lambda kv: (kv[0][0] in SUMMARY_COUNTRIES, kv[0]),
    ):
        rows.append(
            [country, language, str(part["n_valid"].max())] + _model_cells(part, models, "sem_b")
        )
    out += [_md_table(["country", "language", "n valid", *models], rows), ""]
    out += ["## BLEnD: adapter vs base", ""]
    if blend_cmp.height:
        sel = blend_cmp.filter(pl.col("prompt_id") == ALL)
        rows = [
            [
                r["model"],
                r["base"],
                r["country"],
                r["language"],
                _fmt(r["sem_b_base"]),
                _fmt(r["sem_b"]),
                f"{r['delta_sem_b']:+.2f} [{r['ci_low_sem_b']:+.2f}, {r['ci_high_sem_b']:+.2f}]",
                _p(r["p_sem_b"], alpha),
                f"{r['delta_sem_w']:+.2f}",
                _p(r["p_sem_w"], alpha),
            ]
            for r in sel.iter_rows(named=True)
        ]
        out += [
            _md_table(
                [
                    "model",
                    "base",
                    "country",
                    "language",
                    "SEM-B base",
                    "SEM-B",
                    "ΔSEM-B [95% CI]",
                    "p",
                    "ΔSEM-W",
                    "p (W)",
                ],
                rows,
            ),
            "",
        ]
    else:
        out += ["No adapter with a base model among the evaluated models.", ""]
    out += ["## General benchmarks", ""]
    rows = []
    for (bench, task), part in sorted(
        general_sc.group_by(["benchmark", "task"]),
        key=lambda kv: (kv[0][0], is_summary_task(kv[0][1]), kv[0][1]),
    ):
        first = part.row(0, named=True)
        rows.append(
            [bench, task, first["language"], first["metric"], str(first["n"])]
            + _model_cells(part, models, "value", 3)
        )
    out += [_md_table(["benchmark", "task", "language", "metric", "n", *models], rows), ""]
    if general_cmp.height:
        out += ["## General benchmarks: adapter vs base", ""]
        rows = [
            [
                r["model"],
                r["base"],
                r["benchmark"],
                r["task"],
                r["metric"],
                _fmt(r["value_base"], 3),
                _fmt(r["value"], 3),
                f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                _p(r["p_value"], alpha),
            ]
            for r in general_cmp.iter_rows(named=True)
        ]
        out += [
            _md_table(
                [
                    "model",
                    "base",
                    "benchmark",
                    "task",
                    "metric",
                    "base",
                    "adapter",
                    "Δ [95% CI]",
                    "p",
                ],
                rows,
            ),
            "",
        ]
    out += ["## Ablation (macro mean over countries, mean over prompt templates)", ""]
    if ablation.height:
        benches = [
            c
            for c in ablation.columns
            if c not in ("variant", "model", "base")
            and not c.startswith(("delta_", "p_", "sem_b_"))
        ]
        header = ["variant", "model", "SEM-B English", "Δ (p)", "SEM-B local", "Δ (p)"]
        for b in benches:
            header += [b, "Δ (p)"]
        rows = []
        for r in ablation.iter_rows(named=True):
            row = [r["variant"], r["model"]]
            for kind in ("English", "local"):
                d = r[f"delta_sem_b_{kind}"]
                row += [
                    _fmt(r[f"sem_b_{kind}"]),
                    "–" if d is None else f"{d:+.2f} ({_p(r[f'p_sem_b_{kind}'], alpha)})",
                ]
            for b in benches:
                d = r[f"delta_{b}"]
                row += [_fmt(r[b], 3), "–" if d is None else f"{d:+.3f} ({_p(r[f'p_{b}'], alpha)})"]
            rows.append(row)
        out += [_md_table(header, rows), ""]
    else:
        out += ["No training variant of the ablation list is among the evaluated models.", ""]
    return "\n".join(out)


def published_section(
    published: Mapping[str, Any], blend_cmp: pl.DataFrame, general_cmp: pl.DataFrame
) -> str:
    """Markdown: the published headline figures (config evaluate.compare.published, facts from
    the paper) beside this run's for the same quantity: the macro-mean ΔSEM-B over countries per
    question language and the macro-mean Δ per benchmark (percentage points), of the adapter of
    the published `variant` against its base."""
    variant = published.get("variant", "full")
    lines = [
        "## Published figures beside this run",
        "",
        f"Source: {published.get('source', 'the paper')}. Published values are the paper's, as "
        f"printed; 'this run' is the adapter of variant `{variant}` against its base model "
        "(macro means, percentage points).",
        "",
        "| quantity | published | this run | p (this run) |",
        "|---|---|---|---|",
    ]
    runs = blend_cmp.filter((pl.col("variant") == variant) & (pl.col("prompt_id") == ALL))
    for kind, value in (published.get("blend_delta_sem_b") or {}).items():
        lang = "en" if kind == "English" else "local"
        hit = runs.filter((pl.col("country") == ALL_COUNTRIES) & (pl.col("language") == lang))
        mine = f"{hit['delta_sem_b'][0]:+.2f}" if hit.height else "–"
        p = f"{hit['p_sem_b'][0]:.3f}" if hit.height else "–"
        lines.append(
            f"| ΔSEM-B, questions in {kind}, mean over regions | {value:+.2f} | {mine} | {p} |"
        )
    for kind, regions in (published.get("blend_sem_b") or {}).items():
        lang_kind = "English" if kind == "English" else "local"
        for region, value in regions.items():
            hit = runs.filter(
                (pl.col("country") == region) & (pl.col("language_kind") == lang_kind)
            )
            mine = f"{hit['sem_b'][0]:.2f}" if hit.height else "–"
            lines.append(f"| SEM-B {region}, {kind} | {value:.2f} | {mine} | – |")
    gen = general_cmp.filter((pl.col("variant") == variant) & (pl.col("task") == ALL))
    for bench, value in (published.get("benchmark_delta") or {}).items():
        hit = gen.filter(pl.col("benchmark") == bench)
        mine = f"{100 * hit['delta'][0]:+.2f}" if hit.height else "–"
        p = f"{hit['p_value'][0]:.3f}" if hit.height else "–"
        lines.append(f"| Δ {bench}, mean over languages | {value:+.2f} | {mine} | {p} |")
    return "\n".join(lines) + "\n"
