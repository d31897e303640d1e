"""Six-turn dialogues, the region filter, request wordings, and the 3:1 mix with general data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture.consensus.countries import is_blend_country
from polyculture.consensus.dialogues import (
    check_messages,
    check_requests,
    counts_markdown,
    counts_table,
    cultural_records,
    general_count,
    general_pool,
    missing_request_languages,
    mix,
    normalize_language_code,
    request_lookup,
    request_table,
    wording,
)
from polyculture.errors import ConfigError, InputError
from polyculture.io import read_table

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "consensus"
REQUESTS = {
    "critique": {"en": "Check your answer.", "el": "Έλεγξε την απάντησή σου."},
    "refine": {"en": "Now correct it."},
}
COUNTRIES = ["Greece", "Japan", "South Korea", "US", "France", "Spain", "Indonesia", "Brazil"]


def critiques_table(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        country = COUNTRIES[i % len(COUNTRIES)]
        rows.append(
            {
                "question_id": f"q{i:03d}",
                "country": country,
                "weak_language": "el" if i % 2 else "en",
                "question_weak": f"Question {i}?",
                "weak_answer": f"Answer {i}.",
                "critique": f"Critique {i}.",
                "gt_weak": f"Ground truth {i}.",
            }
        )
    return pl.DataFrame(rows)


def general_records(n: int) -> list[dict]:
    """`n` general (non-cultural) training records g0, g1, ... in English."""
    return [
        {
            "messages": [],
            "variant": None,
            "region": None,
            "language": "en",
            "question_id": f"g{i}",
            "source": "general",
        }
        for i in range(n)
    ]


def lookup():
    return request_lookup(request_table(REQUESTS, {("refine", "el"): "Τώρα διόρθωσέ την."}))


def test_cultural_records_have_six_alternating_turns_in_the_paper_order():
    records, drops = cultural_records(
        critiques_table(4), lookup(), variant="full", region_filter=False
    )
    assert drops.dropped == 0 and len(records) == 4
    r = records[1]
    assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * 3
    assert [m["content"] for m in r["messages"]] == [
        "Question 1?",
        "Answer 1.",
        "Έλεγξε την απάντησή σου.",
        "Critique 1.",
        "Τώρα διόρθωσέ την.",
        "Ground truth 1.",
    ]
    assert r["source"] == "cultural" and r["variant"] == "full" and r["language"] == "el"
    assert r["region"] == "Japan" and r["question_id"] == "q001"
    # English has its own wordings
    assert records[0]["messages"][2]["content"] == "Check your answer."
    for rec in records:
        check_messages(rec["messages"], turns=6)


def test_region_filter_keeps_only_blend_regions():
    table = critiques_table(16)
    kept, drops = cultural_records(table, lookup(), variant="full", region_filter=True)
    assert kept and all(is_blend_country(r["region"]) for r in kept)
    n_other = sum(not is_blend_country(c) for c in table["country"])
    assert drops.reasons == {"not_blend_region": n_other}
    unfiltered, _ = cultural_records(
        table, lookup(), variant="no_region_filter", region_filter=False
    )
    assert len(unfiltered) == 16 and {"Japan", "France", "Brazil"} <= {
        r["region"] for r in unfiltered
    }


def test_check_messages_rejects_bad_dialogues():
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    check_messages(good)
    with pytest.raises(ValueError, match="expected 6 turns"):
        check_messages(good, turns=6)
    with pytest.raises(ValueError, match="role"):
        check_messages(list(reversed(good)))
    with pytest.raises(ValueError, match="empty"):
        check_messages([good[0], {"role": "assistant", "content": " "}])


def test_blank_turn_is_dropped_not_written():
    table = critiques_table(2).with_columns(pl.Series("critique", ["", "fine"]))
    records, drops = cultural_records(table, lookup(), variant="full", region_filter=False)
    assert len(records) == 1 and drops.reasons == {"blank_turn": 1}


def test_requests_need_english_and_iso_keys_and_translated_ones_fill_gaps():
    check_requests(REQUESTS)
    with pytest.raises(ConfigError, match=r"requests\.refine\.en"):
        check_requests({"critique": {"en": "x"}, "refine": {"el": "y"}})
    with pytest.raises(ConfigError, match=r"requests\.critique\.xx"):
        check_requests({"critique": {"en": "x", "xx": "y"}, "refine": {"en": "z"}})
    assert missing_request_languages(REQUESTS, ["el", "ko"]) == [
        ("critique", "ko"),
        ("refine", "el"),
        ("refine", "ko"),
    ]
    table = request_table(REQUESTS, {("refine", "ko"): "고쳐 주세요.", ("critique", "ko"): "  "})
    look = request_lookup(table)
    assert wording(look, "refine", "ko") == "고쳐 주세요."
    assert wording(look, "critique", "ko") == "Check your answer."  # blank translation → English
    assert set(table["origin"]) == {"config", "translated"}


def test_language_codes_of_aya_are_normalised():
    assert normalize_language_code("arb") == "ar"
    assert normalize_language_code("pes") == "fa"
    assert normalize_language_code("ell") == "el"
    assert normalize_language_code("en") == "en"
    assert normalize_language_code("zh-Hans") == "zh"
    assert normalize_language_code("tlh") == "tlh"  # no ISO 639-1 code: kept as given


def test_general_pool_from_the_demo_aya_file():
    aya = read_table(DEMO / "aya.jsonl")
    pool, drops = general_pool(aya, "aya.jsonl", None)
    assert drops.reasons == {"blank_text": 1} and len(pool) == aya.height - 1
    assert all(len(r["messages"]) == 2 and r["source"] == "general" for r in pool)
    assert {"ar", "fa", "el", "en", "az", "ha"} <= {r["language"] for r in pool}
    only_el, drops_el = general_pool(aya, "aya.jsonl", ["el"])
    assert {r["language"] for r in only_el} == {"el"}
    assert drops_el.reasons["language_not_kept"] > 0
    with pytest.raises(InputError, match="aya.jsonl.*language_code"):
        general_pool(aya.drop("language_code"), "aya.jsonl", None)


@pytest.mark.parametrize("n_cultural", [0, 1, 2, 7, 12, 30, 31])
def test_mix_ratio_is_three_to_one_within_rounding(n_cultural):
    cultural, _ = cultural_records(
        critiques_table(n_cultural), lookup(), variant="v", region_filter=False
    )
    general = general_records(40)
    mixed = mix(cultural, general, cultural_per_general=3, variant="v", seed=1, origin="aya")
    n_general = sum(r["source"] == "general" for r in mixed)
    assert sum(r["source"] == "cultural" for r in mixed) == n_cultural
    assert n_general == general_count(n_cultural, 3)
    assert abs(n_cultural - 3 * n_general) <= 1.5
    assert all(r["variant"] == "v" for r in mixed)
    assert mixed == mix(
        cultural, general, cultural_per_general=3, variant="v", seed=1, origin="aya"
    )


def test_mix_is_seeded_and_fails_when_general_data_is_short():
    cultural, _ = cultural_records(critiques_table(30), lookup(), variant="v", region_filter=False)
    general = general_records(40)
    a = mix(cultural, general, cultural_per_general=3, variant="v", seed=1, origin="aya")
    b = mix(cultural, general, cultural_per_general=3, variant="v", seed=2, origin="aya")
    assert [r["question_id"] for r in a] != [r["question_id"] for r in b]
    with pytest.raises(InputError, match="30 cultural examples need 10 general examples.*only 9"):
        mix(cultural, general[:9], cultural_per_general=3, variant="v", seed=1, origin="aya")
    assert general_count(5007, 3) == 1669
    with pytest.raises(ConfigError):
        general_count(3, 0)


def test_counts_table_and_markdown():
    cultural, _ = cultural_records(critiques_table(8), lookup(), variant="v", region_filter=False)
    general = [
        {
            "messages": [],
            "variant": "v",
            "region": None,
            "language": lang,
            "question_id": f"g{i}",
            "source": "general",
        }
        for i, lang in enumerate(["en", "en", "el"])
    ]
    counts = counts_table(cultural + general)
    assert counts["count"].sum() == 11
    assert counts.filter(pl.col("source") == "general")["region"].unique().to_list() == [
        "(general)"
    ]
    md = counts_markdown(counts, "v")
    assert "| region | el | en | total |" in md
    assert "| Greece | 0 | 1 | 1 |" in md
    assert "| en | 2 |" in md and "cultural: 8, general: 3, total: 11" in md
    # per-language totals over the regions (the paper's Table 4): 4 Greek, 4 English
    assert "| **all regions** | 4 | 4 | 8 |" in md


def test_language_filter_keeps_only_blends_13_languages():
    table = critiques_table(6).with_columns(
        pl.Series("weak_language", ["en", "el", "ja", "fa", "tr", "su"])
    )
    kept, drops = cultural_records(
        table, lookup(), variant="lf", region_filter=False, language_filter=True
    )
    assert [r["language"] for r in kept] == ["en", "el", "fa", "su"]
    assert drops.reasons == {"not_blend_language": 2}
    # both filters: Japan (row 1 ... ) is not a BLEnD region either way
    both, drops = cultural_records(
        table, lookup(), variant="lf", region_filter=True, language_filter=True
    )
    assert all(is_blend_country(r["region"]) and r["language"] != "ja" for r in both)
    assert set(drops.reasons) <= {"not_blend_region", "not_blend_language"}
    unfiltered, _ = cultural_records(table, lookup(), variant="v", region_filter=False)
    assert len(unfiltered) == 6
