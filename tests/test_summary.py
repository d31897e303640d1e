"""`polyculture summary RESULTS_DIR` and rule run_summary: the headline tables of a run in
Markdown, from the result tables; a directory without them, or of an older layout, fails with
the file and the rule that writes it, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from polyculture.summary import TABLES, drops_section, summarize_results

POLYCULTURE = str(Path(sys.executable).with_name("polyculture"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [POLYCULTURE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _write(results: Path, name: str, rows: list[dict]) -> None:
    path = results / TABLES[name].path
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(path)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_bad_results_directories_fail_clearly_and_write_nothing(tmp_path: Path) -> None:
    proc = run_cli("summary", "no-such-dir", cwd=tmp_path)
    assert proc.returncode == 1 and "no-such-dir: no such results directory" in proc.stderr
    empty = tmp_path / "results"
    empty.mkdir()
    proc = run_cli("summary", "results", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "evaluate/compare/blend_scores.parquet (rule compare_models" in proc.stderr
    assert "alignment/alignment.parquet (rule alignment" in proc.stderr
    # an older layout: a table without a column the summary needs
    _write(empty, "blend_scores", [{"model": "m", "country": "All", "prompt_id": "all"}])
    before = _snapshot(tmp_path)
    proc = run_cli("summary", "results", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "blend_scores.parquet: lacks column(s) language_kind, sem_b, sem_w" in proc.stderr
    assert "older layout" in proc.stderr and "rule compare_models" in proc.stderr
    assert _snapshot(tmp_path) == before


def test_drop_rates_over_five_percent_only() -> None:
    drops = pl.DataFrame(
        {
            "pipeline": ["wvs", "wvs", "wvs", "wvs", "consensus"],
            "stage": ["parse", "parse", "parse", "judge", "questions"],
            "group": ["m", "m", "m", "m", "all"],
            "reason": ["wrong language", "no list", "too short", "empty", "English"],
            "dropped": [2, 3, 0, 1, 40],
            "total": [20, 20, 20, 100, 50],
        }
    )
    text = drops_section(drops)
    assert "| wvs | parse | m | 5 / 20 | 25.0% | no list (3), wrong language (2) |" in text
    assert "| consensus | questions | all | 40 / 50 | 80.0% | English (40) |" in text
    assert "judge" not in text  # 1 %


@pytest.fixture(scope="module")
def demo_summary(demo_run: Path) -> tuple[Path, str]:
    proc = run_cli("summary", "results", cwd=demo_run)
    assert proc.returncode == 0, proc.stderr
    return demo_run / "results", proc.stdout


def test_summary_of_the_demo_run(demo_summary: tuple[Path, str]) -> None:
    results, text = demo_summary
    # the workflow's rule wrote the same page
    assert (results / "summary.md").read_text(encoding="utf-8") == text
    assert text == summarize_results(results)
    for heading in (
        "## BLEnD (macro mean over countries)",
        "## General benchmarks (macro mean over languages)",
        "## WVS cultural alignment",
        "### Self-consistency",
        "## Drop rates over 5%",
    ):
        assert heading in text, heading
    # the numbers are the result tables' own
    scores = pl.read_parquet(results / TABLES["blend_scores"].path).filter(
        (pl.col("country") == "All") & (pl.col("prompt_id") == "all")
    )
    for r in scores.iter_rows(named=True):
        assert (
            f"| {r['model']} | {r['language_kind']} | {r['sem_b']:.2f} | {r['sem_w']:.2f} |" in text
        )
    comparison = pl.read_parquet(results / TABLES["blend_comparison"].path).filter(
        (pl.col("country") == "All") & (pl.col("prompt_id") == "all")
    )
    assert comparison.height > 0
    for r in comparison.iter_rows(named=True):
        delta = f"{r['delta_sem_b']:+.2f} [{r['ci_low_sem_b']:.2f}, {r['ci_high_sem_b']:.2f}]"
        assert f"| {r['base']} | {delta} |" in text
    consistency = pl.read_parquet(results / TABLES["self_consistency"].path)
    for r in consistency.iter_rows(named=True):
        assert f"| {r['model']} | {r['language']} | {r['consistency']:.3f} |" in text


def test_the_summary_reads_the_labels_the_comparison_writes() -> None:
    from polyculture import compare, summary

    assert (summary.ALL, summary.ALL_COUNTRIES) == (compare.ALL, compare.ALL_COUNTRIES)
