"""The headline results of a run in Markdown: BLEnD and the general benchmarks per model with
the differences to the base model, WVS alignment and self-consistency, the replication of the
published regressions, and the stages that dropped more than 5 % of their items.

Built only from the result tables the workflow writes (paths relative to the results directory
in :data:`TABLES`); `polyculture summary RESULTS_DIR` prints it and rule `run_summary` writes
it to RESULTS_DIR/summary.md. Not to be confused with :mod:`polyculture.wvs.summary` (the WVS
pipeline's own report tables).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.errors import InputError
from polyculture.model_card import markdown_table

#: The labels polyculture.compare.pairs writes for the macro means (prompt templates / benchmark
#: tasks: ALL; countries: ALL_COUNTRIES), repeated here so that the summary, which runs in the
#: light `report` environment, does not import the comparison's numpy/matplotlib stack;
#: tests/test_summary.py checks they agree.
ALL = "all"
ALL_COUNTRIES = "All"

#: Drop rates above this share are listed (the issue's 5 %; our choice: below it a stage's
#: drops rarely change a headline number).
DROP_RATE_SHOWN = 0.05


@dataclass(frozen=True)
class Table:
    """A result table the summary reads: where it lies, the columns it needs, what makes it."""

    path: str
    columns: tuple[str, ...]
    made_by: str


#: name → result table, paths relative to the results directory.
TABLES: dict[str, Table] = {
    "blend_scores": Table(
        "evaluate/compare/blend_scores.parquet",
        ("model", "country", "language_kind", "prompt_id", "sem_b", "sem_w", "n_valid"),
        "rule compare_models (the evaluate pipeline)",
    ),
    "blend_comparison": Table(
        "evaluate/compare/blend_comparison.parquet",
        (
            "model",
            "base",
            "country",
            "language_kind",
            "prompt_id",
            "delta_sem_b",
            "ci_low_sem_b",
            "ci_high_sem_b",
            "p_sem_b",
            "delta_sem_w",
            "p_sem_w",
        ),
        "rule compare_models (the evaluate pipeline)",
    ),
    "general_scores": Table(
        "evaluate/compare/general_scores.parquet",
        ("model", "benchmark", "task", "metric", "value", "n"),
        "rule compare_models (the evaluate pipeline)",
    ),
    "general_comparison": Table(
        "evaluate/compare/general_comparison.parquet",
        ("model", "base", "benchmark", "task", "metric", "delta", "ci_low", "ci_high", "p_value"),
        "rule compare_models (the evaluate pipeline)",
    ),
    "alignment": Table(
        "alignment/alignment.parquet",
        ("model", "language", "level", "group", "unit", "alignment", "ci_low", "ci_high"),
        "rule alignment (the alignment pipeline)",
    ),
    "self_consistency": Table(
        "alignment/self_consistency.parquet",
        ("model", "language", "consistency", "ci_low", "ci_high", "n_pairs"),
        "rule self_consistency (the alignment pipeline)",
    ),
    "replication": Table(
        "alignment/replication_summary.tsv",
        (),
        "rule replication_report (alignment.published set)",
    ),
    "drops": Table(
        "report/drops.parquet",
        ("pipeline", "stage", "group", "reason", "dropped", "total"),
        "rule drops_summary (every pipeline)",
    ),
}


def find_tables(results_dir: Path) -> dict[str, Path]:
    """The result tables of :data:`TABLES` that `results_dir` holds, by name. Fails naming the
    directory, every table looked for and the rule that writes it when it holds none."""
    if not results_dir.is_dir():
        raise InputError(results_dir, "no such results directory (the config's `results:` key)")
    found = {n: results_dir / t.path for n, t in TABLES.items() if (results_dir / t.path).is_file()}
    if not found:
        wanted = "; ".join(f"{t.path} ({t.made_by})" for t in TABLES.values())
        raise InputError(
            results_dir,
            f"no result tables to sum up; looked for {wanted}. Run the workflow first "
            "(`snakemake --configfile CONFIG`; its default target writes them)",
        )
    return found


def read_result(name: str, path: Path) -> pl.DataFrame:
    """One result table, checked for the columns the summary needs (a results directory of an
    older layout fails here, naming the file and the columns)."""
    table = TABLES[name]
    df = (
        pl.read_csv(path, separator="\t", infer_schema_length=10000)
        if path.suffix == ".tsv"
        else pl.read_parquet(path)
    )
    missing = [c for c in table.columns if c not in df.columns]
    if missing:
        raise InputError(
            path,
            f"lacks column(s) {', '.join(missing)}: a results directory of an older layout; "
            f"rerun {table.made_by} to rewrite it",
        )
    return df


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _delta(delta: Any, low: Any, high: Any, digits: int) -> str:
    """`+1.23 [-0.40, 2.90]`."""
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "–"
    return f"{float(delta):+.{digits}f} [{_num(low, digits)}, {_num(high, digits)}]"


def blend_section(scores: pl.DataFrame, comparison: pl.DataFrame | None) -> str:
    """BLEnD macro mean over countries (prompt templates averaged) per model and question
    language, with Δ [95 % CI] and p against the model's base where it has one."""
    head = scores.filter((pl.col("country") == ALL_COUNTRIES) & (pl.col("prompt_id") == ALL))
    deltas: dict[tuple[str, str], dict[str, Any]] = {}
    if comparison is not None:
        part = comparison.filter(
            (pl.col("country") == ALL_COUNTRIES) & (pl.col("prompt_id") == ALL)
        )
        deltas = {(r["model"], r["language_kind"]): r for r in part.iter_rows(named=True)}
    rows = []
    for r in head.sort("language_kind", "model").iter_rows(named=True):
        d = deltas.get((r["model"], r["language_kind"]), {})
        rows.append(
            (
                r["model"],
                r["language_kind"],
                _num(r["sem_b"], 2),
                _num(r["sem_w"], 2),
                d.get("base", "–") or "–",
                _delta(d.get("delta_sem_b"), d.get("ci_low_sem_b"), d.get("ci_high_sem_b"), 2),
                _p(d.get("p_sem_b")),
                _num(d.get("delta_sem_w"), 2) if d else "–",
                _p(d.get("p_sem_w")),
                r["n_valid"],
            )
        )
    headers = (
        "model",
        "questions in",
        "SEM-B",
        "SEM-W",
        "base",
        "ΔSEM-B [95 % CI]",
        "p",
        "ΔSEM-W",
        "p",
        "questions",
    )
    return "\n".join(
        [
            "## BLEnD (macro mean over countries)",
            "",
            "SEM-B / SEM-W in percent, averaged over the prompt templates; Δ against the base "
            "model with the paired-bootstrap interval and p-value (rule compare_models).",
            "",
            markdown_table(headers, rows) if rows else "(no macro-mean rows)",
        ]
    )


def general_section(scores: pl.DataFrame, comparison: pl.DataFrame | None) -> str:
    """Each general benchmark's macro mean over its languages per model, with Δ [95 % CI] and p
    against the base."""
    head = scores.filter(pl.col("task") == ALL)
    deltas: dict[tuple[str, str], dict[str, Any]] = {}
    if comparison is not None:
        part = comparison.filter(pl.col("task") == ALL)
        deltas = {(r["model"], r["benchmark"]): r for r in part.iter_rows(named=True)}
    rows = []
    for r in head.sort("benchmark", "model").iter_rows(named=True):
        d = deltas.get((r["model"], r["benchmark"]), {})
        rows.append(
            (
                r["benchmark"],
                r["model"],
                r["metric"],
                _num(r["value"], 4),
                d.get("base", "–") or "–",
                _delta(d.get("delta"), d.get("ci_low"), d.get("ci_high"), 4),
                _p(d.get("p_value")),
                r["n"],
            )
        )
    headers = ("benchmark", "model", "metric", "score", "base", "Δ [95 % CI]", "p", "items")
    return "\n".join(
        [
            "## General benchmarks (macro mean over languages)",
            "",
            markdown_table(headers, rows) if rows else "(no benchmark rows)",
        ]
    )


def alignment_section(alignment: pl.DataFrame, consistency: pl.DataFrame | None) -> str:
    """WVS alignment per model, language and population level (countries: the mean over the
    countries with their number; the per-country values are in alignment.parquet), and
    self-consistency, with the bootstrap intervals."""
    units = alignment["unit"].unique().to_list()
    unit = "topic" if "topic" in units else sorted(units)[0]
    part = alignment.filter(pl.col("unit") == unit)
    rows = []
    single = part.filter(pl.col("level") != "country")
    for r in single.sort("model", "language", "level", "group").iter_rows(named=True):
        rows.append(
            (
                r["model"],
                r["language"],
                r["level"],
                r["group"],
                _num(r["alignment"], 3),
                f"[{_num(r['ci_low'], 3)}, {_num(r['ci_high'], 3)}]",
            )
        )
    countries = (
        part.filter(pl.col("level") == "country")
        .group_by("model", "language")
        .agg(pl.col("alignment").mean().alias("mean"), pl.len().alias("n"))
        .sort("model", "language")
    )
    for r in countries.iter_rows(named=True):
        rows.append(
            (r["model"], r["language"], "country", f"mean of {r['n']}", _num(r["mean"], 3), "–")
        )
    rows.sort(key=lambda row: (row[0], row[1]))
    out = [
        "## WVS cultural alignment",
        "",
        f"Spearman correlation with the survey population's polarity (unit: {unit}), with the "
        "bootstrap interval; countries: mean over the countries (each with its interval in "
        "alignment/alignment.parquet).",
        "",
        markdown_table(("model", "language", "level", "population", "alignment", "95 % CI"), rows)
        if rows
        else "(no alignment rows)",
    ]
    if consistency is not None:
        crow = [
            (
                r["model"],
                r["language"],
                _num(r["consistency"], 3),
                f"[{_num(r['ci_low'], 3)}, {_num(r['ci_high'], 3)}]",
                r["n_pairs"],
            )
            for r in consistency.sort("model", "language").iter_rows(named=True)
        ]
        out += [
            "",
            "### Self-consistency",
            "",
            markdown_table(("model", "language", "self-consistency", "95 % CI", "pairs"), crow),
        ]
    return "\n".join(out)


def replication_section(replication: pl.DataFrame) -> str:
    """The replication summary table as written by rule replication_report."""
    rows = [
        tuple("–" if v is None else (_num(v, 3) if isinstance(v, float) else v) for v in row)
        for row in replication.iter_rows()
    ]
    return "\n".join(
        [
            "## Replication of the published regressions",
            "",
            markdown_table(replication.columns, rows),
        ]
    )


def drops_section(drops: pl.DataFrame, threshold: float = DROP_RATE_SHOWN) -> str:
    """Stages × groups that dropped more than `threshold` of their items, with the reasons."""
    keys = ["pipeline", "stage", "group"]
    reasons = (
        drops.filter(pl.col("dropped") > 0)
        .sort("dropped", descending=True)
        .group_by(keys, maintain_order=True)
        .agg(pl.struct("reason", "dropped").alias("reasons"))
    )
    per_group = (
        drops.group_by(keys)
        .agg(pl.col("dropped").sum(), pl.col("total").max())
        .with_columns(rate=pl.col("dropped") / pl.col("total"))
        .filter((pl.col("total") > 0) & (pl.col("rate") > threshold))
        .join(reasons, on=keys, how="left")
        .sort(keys)
    )
    rows = [
        (
            r["pipeline"],
            r["stage"],
            r["group"],
            f"{r['dropped']} / {r['total']}",
            f"{r['rate']:.1%}",
            ", ".join(f"{x['reason']} ({x['dropped']})" for x in (r["reasons"] or [])[:3]),
        )
        for r in per_group.iter_rows(named=True)
    ]
    body = (
        markdown_table(("pipeline", "stage", "group", "dropped", "rate", "reasons"), rows)
        if rows
        else f"No stage dropped more than {threshold:.0%} of its items."
    )
    return "\n".join(
        [f"## Drop rates over {threshold:.0%}", "", body, "", "All drops: report/drops.tsv."]
    )


BENCHMARK_SUMMARY = "summary.json"  # results/evaluate/<benchmark>/ (rule benchmark_compare)


def _is_benchmark_summary(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"benchmark", "headline", "aggregates"} <= set(doc)


def find_benchmark_summaries(results_dir: Path) -> list[Path]:
    """The benchmark summaries (evaluate/<benchmark>/summary.json written by rule
    benchmark_compare) under `results_dir`, sorted; JSON files of another shape are not."""
    found = sorted((results_dir / "evaluate").glob(f"*/{BENCHMARK_SUMMARY}"))
    return [p for p in found if _is_benchmark_summary(p)]


def benchmarks_section(paths: Sequence[Path]) -> str:
    """Each benchmark's headline per model (macro mean over its groups), items, drops and the
    paired difference to its base, from the benchmarks' summary.json files."""
    rows = []
    notes = []
    for path in paths:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            name, head = doc["benchmark"], doc["headline"]
            aggregates, comparisons = doc["aggregates"], doc["comparisons"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                path, f"not a benchmark summary (rule benchmark_compare): {exc}"
            ) from exc
        macro = {
            a["model"]: a
            for a in aggregates
            if a["metric"] == head["metric"] and a["group"] == "All"
        }
        deltas = {
            c["model"]: c
            for c in comparisons
            if c["metric"] == head["metric"] and c["group"] == "All"
        }
        for model, a in macro.items():
            d = deltas.get(model)
            rows.append(
                (
                    name,
                    model,
                    _num(a["score"], 1),
                    str(a["n"]),
                    str(a["dropped"]),
                    "–"
                    if d is None
                    else f"{d['delta']:+.1f} vs {d['base']} (p {d['p_value']:.3f})",
                )
            )
        notes += [f"{name}: {n}" for n in doc.get("notes", [])]
        notes.append(
            f"{name}: {head['metric']}, {head['aggregation']}; details in evaluate/{path.parent.name}/summary.md"
        )
    header = ("benchmark", "model", "headline", "n", "dropped", "paired difference")
    return "\n".join(
        [
            "## Benchmarks (macro mean over groups)",
            "",
            markdown_table(header, rows),
            "",
            *(f"- {n}" for n in notes),
        ]
    )


def summary_markdown(
    tables: Mapping[str, Path], title: str = "Results", benchmarks: Sequence[Path] = ()
) -> str:
    """The summary of the result tables `tables` (name → path, names of :data:`TABLES`) and of
    the benchmark summaries `benchmarks` (summary.json files); a section for each part whose
    tables are there."""
    read = {name: read_result(name, path) for name, path in tables.items()}
    sections: list[str] = [f"# {title}"]
    if "blend_scores" in read:
        sections.append(blend_section(read["blend_scores"], read.get("blend_comparison")))
    if "general_scores" in read:
        sections.append(general_section(read["general_scores"], read.get("general_comparison")))
    if benchmarks:
        sections.append(benchmarks_section(benchmarks))
    if "alignment" in read:
        sections.append(alignment_section(read["alignment"], read.get("self_consistency")))
    if "replication" in read:
        sections.append(replication_section(read["replication"]))
    if "drops" in read:
        sections.append(drops_section(read["drops"]))
    return "\n\n".join(sections) + "\n"


def summarize_results(results_dir: Path) -> str:
    """The summary of the results directory `results_dir`."""
    return summary_markdown(
        find_tables(results_dir), benchmarks=find_benchmark_summaries(results_dir)
    )


__all__: Sequence[str] = [
    "BENCHMARK_SUMMARY",
    "DROP_RATE_SHOWN",
    "TABLES",
    "Table",
    "benchmarks_section",
    "find_benchmark_summaries",
    "find_tables",
    "read_result",
    "summarize_results",
    "summary_markdown",
]
