"""Statement ingestion: CANDLE and CultureAtlas formats, the config filters, country names."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from polyculture.consensus.countries import (
    blend_regions,
    canonical_country,
    is_blend_country,
    known_countries,
)
from polyculture.consensus.statements import check_sources, ingest, load_source_table
from polyculture.errors import ConfigError, InputError

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "consensus"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "tables"
FILTERS = dict(
    min_combined_score=0.5,
    subject_types=["countries"],
    min_per_country=1,
    max_per_country=None,
    on_unknown_country="error",
    seed=0,
)


def _load(sources: list[dict], tmp_path: Path):
    schema = {f: SCHEMAS / f"consensus_{f}.schema.yaml" for f in ("candle", "cultureatlas")}
    return [(s, *load_source_table(s, tmp_path, schema[s["format"]])) for s in sources]


def _candle(tmp_path: Path, rows: list[dict], name: str = "c.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(subject="Greece", domain="countries", score=0.9, assertion="Greeks eat lamb at Easter."):
    return {
        "subject": subject,
        "domain": domain,
        "facet": "food",
        "assertion": assertion,
        "combined_score": score,
        "raw_sentences": [assertion],
    }


def test_country_names_map_to_canonical_blend_names():
    assert canonical_country("United States") == "US"
    assert canonical_country("the United Kingdom") == "UK"
    assert canonical_country("Republic of Korea") == "South Korea"
    assert canonical_country("South_Korea") == "South Korea"
    assert canonical_country("Côte d'Ivoire") == "Ivory Coast"
    assert canonical_country("Atlantis") is None
    assert len(blend_regions()) == 16 and all(is_blend_country(r) for r in blend_regions())
    assert not is_blend_country("Japan") and "Japan" in known_countries()


def test_demo_sources_are_ingested_with_the_filters(tmp_path):
    sources = [
        {"format": "candle", "path": str(DEMO / "candle.jsonl")},
        {"format": "cultureatlas", "path": str(DEMO / "cultureatlas.csv")},
    ]
    statements, drops = ingest(_load(sources, tmp_path), **FILTERS)
    candle = pl.read_ndjson(DEMO / "candle.jsonl")
    low = candle.filter(pl.col("combined_score") < 0.5).height
    other_type = candle.filter(pl.col("domain") != "countries").height
    assert drops.reasons["combined_score_below_threshold"] == low == 2
    assert drops.reasons["subject_type_not_kept"] == other_type == 1
    assert statements.height == candle.height - low - other_type + 12
    assert statements["statement_id"].is_unique().all()
    assert {"US", "UK", "Japan", "Greece"} <= set(statements["country"])
    assert "food of Greece" in set(statements["topic"])
    assert "Japanese etiquette" in set(statements["topic"])


def test_min_and_max_per_country(tmp_path):
    rows = [_row("Greece", assertion=f"Greek fact {i}.") for i in range(5)]
    rows += [_row("Spain", assertion="A Spanish fact."), _row("Spain", assertion="A Spanish fact.")]
    rows += [_row("Japan", assertion=f"Japanese fact {i}.") for i in range(2)]
    tables = _load([{"format": "candle", "path": str(_candle(tmp_path, rows))}], tmp_path)
    out, drops = ingest(
        tables, **{**FILTERS, "min_per_country": 2, "max_per_country": 3, "seed": 4}
    )
    # Spain's two rows are one duplicate text, which leaves one statement: below the minimum
    assert drops.reasons["duplicate_statement"] == 1
    assert drops.reasons["below_min_per_country"] == 1
    assert drops.reasons["above_max_per_country"] == 2
    assert sorted(out["country"].value_counts().sort("country").iter_rows()) == [
        ("Greece", 3),
        ("Japan", 2),
    ]
    again, _ = ingest(tables, **{**FILTERS, "min_per_country": 2, "max_per_country": 3, "seed": 4})
    assert again.equals(out)


def test_url_source_reads_the_same_rows(tmp_path):
    path = _candle(tmp_path, [_row()])
    sources = [{"format": "candle", "url": path.resolve().as_uri()}]
    out, _ = ingest(_load(sources, tmp_path / "downloads"), **FILTERS)
    assert out["text"].to_list() == ["Greeks eat lamb at Easter."]


def test_missing_column_is_an_error_naming_the_file(tmp_path):
    row = _row()
    del row["combined_score"]
    path = _candle(tmp_path, [row])
    with pytest.raises(InputError, match=r"c\.jsonl.*missing column.*combined_score"):
        _load([{"format": "candle", "path": str(path)}], tmp_path)
    csv = tmp_path / "atlas.csv"
    csv.write_text("Assertion,Country,Url\nA fact.,Greece,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"atlas\.csv.*missing column.*Titile"):
        _load([{"format": "cultureatlas", "path": str(csv)}], tmp_path)


def test_empty_files_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty.jsonl: file is empty"):
        _load([{"format": "candle", "path": str(empty)}], tmp_path)
    header_only = tmp_path / "header.csv"
    header_only.write_text(
        "Assertion,Context1,Context2,Context3,Country,Titile,Url\n", encoding="utf-8"
    )
    with pytest.raises(InputError, match="header.csv: table has no rows"):
        _load([{"format": "cultureatlas", "path": str(header_only)}], tmp_path)


def test_unknown_country_is_an_error_or_a_counted_drop(tmp_path):
    path = _candle(tmp_path, [_row(), _row("Atlantis", assertion="Atlanteans swim.")])
    tables = _load([{"format": "candle", "path": str(path)}], tmp_path)
    with pytest.raises(
        InputError, match=r"c\.jsonl: row 2: subject 'Atlantis' is not a known country"
    ):
        ingest(tables, **FILTERS)
    out, drops = ingest(tables, **{**FILTERS, "on_unknown_country": "drop"})
    assert out.height == 1 and drops.reasons["unknown_country"] == 1


def test_bad_score_and_nothing_left_are_errors(tmp_path):
    path = _candle(tmp_path, [_row(score="high")])
    with pytest.raises(InputError):
        ingest(_load([{"format": "candle", "path": str(path)}], tmp_path), **FILTERS)
    path = _candle(tmp_path, [_row(score=0.1)], "low.jsonl")
    with pytest.raises(InputError, match="no statement is left.*combined_score_below_threshold: 1"):
        ingest(_load([{"format": "candle", "path": str(path)}], tmp_path), **FILTERS)


def test_source_config_checks():
    with pytest.raises(ConfigError, match="at least one"):
        check_sources([])
    with pytest.raises(ConfigError, match=r"sources\[0\].*exactly one of path, url, hub"):
        check_sources([{"format": "candle", "path": "a", "hub": "b/c"}])
    with pytest.raises(ConfigError, match="unique"):
        check_sources(
            [
                {"format": "candle", "path": "a", "name": "x"},
                {"format": "candle", "path": "b", "name": "x"},
            ]
        )


def test_hub_source_loads_through_the_datasets_library(tmp_path):
    """A `hub:` source goes through datasets.load_dataset; a local dataset directory exercises
    the same code path offline."""
    repo = tmp_path / "candle-dataset"
    repo.mkdir()
    _candle(repo, [_row(), _row("Japan", assertion="Shoes come off indoors.")], "train.jsonl")
    sources = [{"format": "candle", "hub": str(repo), "split": "train"}]
    out, _ = ingest(_load(sources, tmp_path), **FILTERS)
    assert out["country"].to_list() == ["Greece", "Japan"]
