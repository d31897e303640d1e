"""The `polyculture` console script, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

POLYCULTURE = str(Path(sys.executable).with_name("polyculture"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [POLYCULTURE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def responses(tmp_path: Path) -> Path:
    rows = [
        # Greece in Greek, inst-4 (prompt rebuilt from the data dir: 'Απάντηση:' label removed)
        {
            "ID": "demo-fo-01",
            "country": "Greece",
            "language": "el",
            "prompt_id": "inst-4",
            "response": "Απάντηση: κουλούρι",
        },
        {
            "ID": "demo-sp-01",
            "country": "Greece",
            "language": "el",
            "prompt_id": "inst-4",
            "response": "Μπάσκετ",
        },
        # Greece in English (language given by name)
        {
            "ID": "demo-fo-01",
            "country": "Greece",
            "language": "English",
            "prompt_id": "inst-4",
            "response": "Toast.",
        },
        # the US, a response that matches nothing
        {
            "ID": "demo-fo-04",
            "country": "US",
            "language": "en",
            "prompt_id": "pers-3",
            "response": "Coffee, black.",
        },
        {
            "ID": "demo-sp-01",
            "country": "US",
            "language": "en",
            "prompt_id": "pers-3",
            "response": "Cricket",
        },
    ]
    path = tmp_path / "responses.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_help_lists_blend_score(repo_root: Path) -> None:
    proc = run_cli("--help", cwd=repo_root)
    assert proc.returncode == 0 and "blend-score" in proc.stdout
    proc = run_cli("blend-score", "--help", cwd=repo_root)
    assert proc.returncode == 0 and "--responses" in proc.stdout and "--out" in proc.stdout


def test_blend_score_prints_and_writes_scores(
    repo_root: Path, responses: Path, tmp_path: Path
) -> None:
    out, per_q = tmp_path / "scores.csv", tmp_path / "per_question.parquet"
    proc = run_cli(
        "blend-score",
        "--data", "resources/demo/blend",
        "--responses", str(responses),
        "--out", str(out),
        "--per-question", str(per_q),
        cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()[2:]]
    # country, language, prompt, SEM-B, SEM-W, n_valid
    assert lines == [
        ["Greece", "el", "inst-4", "12.50", "10.00", "16"],
        ["Greece", "en", "inst-4", "6.25", "4.17", "16"],
        ["US", "en", "pers-3", "6.25", "6.25", "16"],
    ]
    assert "15 of 16 valid questions have no response" in proc.stderr
    scores = pl.read_csv(out)
    assert scores.columns[:6] == ["country", "language", "prompt_id", "sem_b", "sem_w", "n_valid"]
    assert scores["sem_b"].to_list() == pytest.approx([200 / 16, 100 / 16, 100 / 16])
    table = pl.read_parquet(per_q)
    assert table.height == 3 * 19
    row = table.filter((pl.col("language") == "el") & (pl.col("ID") == "demo-fo-01")).row(
        0, named=True
    )
    assert (row["cleaned"], row["match"], row["matched_via"]) == ("κουλούρι", 1, "local")


def test_blend_score_reports_bad_rows(repo_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,country,language,response\ndemo-fo-01,US,Greek,eggs\n", encoding="utf-8")
    proc = run_cli(
        "blend-score", "--data", "resources/demo/blend", "--responses", str(bad), cwd=repo_root
    )
    assert proc.returncode == 2
    assert "bad.csv: row 1: language 'Greek' is not asked in US" in proc.stderr
    proc = run_cli(
        "blend-score",
        "--data",
        str(tmp_path),
        "--responses",
        str(tmp_path / "none.csv"),
        cwd=repo_root,
    )
    assert proc.returncode == 2 and "none.csv: file does not exist" in proc.stderr
