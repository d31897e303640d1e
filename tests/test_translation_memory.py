"""polyculture.backends.translation.memory: exact and normalised lookup, both directions, drops counted
(never passed through), errors naming the file and row, and the factory in translate.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyculture.backends.translation import TranslatorSettings, load_translator
from polyculture.backends.translation.memory import (
    MemoryTranslator,
    build_memory,
    normalise,
    read_memory,
)
from polyculture.errors import ConfigError, InputError

ROWS = [
    {
        "source_language": "en",
        "target_language": "el",
        "source": "What do people eat at Easter?",
        "target": "Τι τρώνε οι άνθρωποι το Πάσχα;",
    },
    {"source_language": "el", "target_language": "en", "source": "Αρνί", "target": "Lamb"},
]


def test_normalise_folds_case_space_nfc_and_trailing_punctuation() -> None:
    decomposed = "Ε\u0301λα  ρε!\n"  # E + combining acute
    assert normalise(decomposed) == "έλα ρε"
    assert normalise("  What DO people\teat?? ") == "what do people eat"
    assert normalise("Τι τρώνε;") == "τι τρώνε"


def test_exact_then_normalised_match_both_directions() -> None:
    t = MemoryTranslator(build_memory(ROWS))
    out = t.translate(
        [
            "What do people eat at Easter?",
            "what do  people eat at easter",
            "Αρνί",
            "lamb.",
            "Τι τρώνε οι άνθρωποι το Πάσχα",
        ],
        ["en", "en", "el", "en", "el"],
        ["el", "el", "en", "el", "en"],
    )
    assert out == [
        "Τι τρώνε οι άνθρωποι το Πάσχα;",
        "Τι τρώνε οι άνθρωποι το Πάσχα;",
        "Lamb",
        "Αρνί",
        "What do people eat at Easter?",
    ]
    assert t.missing.total == 0


def test_missing_segment_is_dropped_and_counted_never_passed_through() -> None:
    t = MemoryTranslator(build_memory(ROWS))
    out = t.translate(["Moussaka", "Αρνί", "Moussaka"], ["en", "el", "en"], "el")
    assert out[0] == "" and out[2] == ""  # not "Moussaka"
    assert out[1] == "Αρνί"  # same language: unchanged, no lookup
    assert t.missing.by_pair == {("en", "el"): 1}  # duplicates looked up once
    with pytest.raises(ConfigError, match="does not support language 'de'"):
        t.translate(["Lamb"], "en", "de")


def test_conflicts_name_the_rows() -> None:
    rows = [
        *ROWS,
        {
            "source_language": "en",
            "target_language": "el",
            "source": "what do people eat at easter",
            "target": "Άλλο",
        },
    ]
    with pytest.raises(InputError, match=r"row 3: normalised source .* \(row 1\)"):
        build_memory(rows)
    # two English segments with one Greek translation: the reverse is ambiguous unless decided
    amb = [
        {"source_language": "en", "target_language": "el", "source": s, "target": "Αρνί"}
        for s in ("Lamb", "Lamb meat")
    ]
    with pytest.raises(InputError, match="cannot be translated back"):
        build_memory(amb)
    decided = [
        *amb,
        {"source_language": "el", "target_language": "en", "source": "Αρνί", "target": "Lamb"},
    ]
    assert build_memory(decided).lookup("αρνί", "el", "en") == "Lamb"
    with pytest.raises(InputError, match="row 1, column target_language: 'xx'"):
        build_memory([{**ROWS[0], "target_language": "xx"}])
    with pytest.raises(InputError, match="row 1, column target: expected a non-empty"):
        build_memory([{**ROWS[0], "target": " "}])


def test_read_memory_tsv_and_csv_and_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "tm.tsv"
    tsv.write_text(
        "source_language\ttarget_language\tsource\ttarget\nel\ten\tΑρνί\tLamb\n", encoding="utf-8"
    )
    assert read_memory(tsv).lookup("Lamb", "en", "el") == "Αρνί"
    csv = tmp_path / "tm.csv"
    csv.write_text(
        'source_language,target_language,source,target\nel,en,"Αρνί, ψητό",Roast lamb\n',
        encoding="utf-8",
    )
    assert read_memory(csv).lookup("roast lamb", "en", "el") == "Αρνί, ψητό"
    bad = tmp_path / "bad.csv"
    bad.write_text("source,target\na,b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.csv: missing column\(s\) source_language"):
        read_memory(bad)
    with pytest.raises(ConfigError, match="no such translation memory"):
        read_memory(tmp_path / "none.csv")


def test_factory_builds_memory_translator(tmp_path: Path) -> None:
    tsv = tmp_path / "tm.tsv"
    tsv.write_text(
        "source_language\ttarget_language\tsource\ttarget\nel\ten\tΑρνί\tLamb\n", encoding="utf-8"
    )
    t = load_translator(TranslatorSettings("memory", path=str(tsv)))
    assert isinstance(t, MemoryTranslator) and t.translate(["Αρνί"], "el", "en") == ["Lamb"]
    with pytest.raises(ConfigError, match="translator.path"):
        TranslatorSettings("memory")
