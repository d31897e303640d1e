"""WVS stage 5: splitting responses into numbered summaries and dropping unusable responses,
on hand-written cases and on 200 real model responses from the released material."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from polyculture.errors import ConfigError
from polyculture.io import read_table
from polyculture.wvs.surveys import (
    LanguageIdentifier,
    candidate_languages,
    drops_frame,
    parse_responses,
    split_numbered,
)

IDENTIFIER = LanguageIdentifier(
    candidate_languages(["da", "en", "nl", "pt"], ["de", "es", "fr", "nb", "sv"])
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Here you go:\n1. First view.\n2. Second view.\n3. Third.",
            ["First view.", "Second view.", "Third."],
        ),
        ("1) alpha\n2) beta", ["alpha", "beta"]),
        ("1: alpha\n2: beta", ["alpha", "beta"]),
        ("１．甲\n２．乙\n３）丙", ["甲", "乙", "丙"]),
        ('**1.** Quoted "yes"\n\n**2.** No', ['Quoted "yes"', "No"]),
        (
            "**1. Anna, 30:** likes it\n**2. Bo, 41:** does not",
            ["Anna, 30: likes it", "Bo, 41: does not"],
        ),
        ("## 1. Heading one\n## 2. Heading two", ["Heading one", "Heading two"]),
        # a closing remark after the last item is cut; items of several paragraphs are kept
        ("1. a\n2. b\n\nNote: these are fictional.", ["a", "b"]),
        (
            '**1. Ann:**\n\n"quote a"\n\n**2. Bo:**\n\n"quote b"\n\nThat is all.',
            ["Ann:\nquote a", "Bo:\nquote b"],
        ),
        # numbering must run 1, 2, 3 ...: other numbers are text of the current item
        (
            "1. In 2019. it changed\n2. x\n 1. nested\n3. y",
            ["In 2019. it changed", "x\n1. nested", "y"],
        ),
        ("## 10 Interviews about it\n1. a\n2. b", ["a", "b"]),
        ("3. starts late\n4. no", []),
        ("No list at all, just an opinion.", []),
        ("1. a\n2. **", ["a"]),  # a truncated last item is not an item
        ("- a\n- b\n- c", []),  # bullets are not the requested format by default
    ],
)
def test_split_numbered(text: str, expected: list[str]):
    assert split_numbered(text) == expected


def test_bullets_when_accepted():
    assert split_numbered("Views:\n- a\n* b\n• c", accept_bullets=True) == ["a", "b", "c"]
    # a numbered list wins over bullets inside it
    assert split_numbered("1. a\n - detail\n2. b", accept_bullets=True) == ["a\n- detail", "b"]


def responses_table(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["m"] * len(rows),
            "family": ["f"] * len(rows),
            "language": [lang for lang, _ in rows],
            "prompt_id": [f"p{i}" for i in range(len(rows))],
            "template_id": ["t01"] * len(rows),
            "topic_variant_id": ["f118:v1"] * len(rows),
            "question_key": ["f118"] * len(rows),
            "response_id": [f"m/{lang}/p{i}/0" for i, (lang, _) in enumerate(rows)],
            "sample": [0] * len(rows),
            "response": [text for _, text in rows],
        }
    )


def test_parse_responses_drops_by_reason():
    en = "1. Most people I met think it is fine.\n2. Some of them strongly disagree with it."
    da = "1. De fleste synes, at det er helt i orden.\n2. Nogle er meget uenige i det."
    table = responses_table(
        [
            ("en", en),
            ("en", "   "),
            ("en", "I will not write this."),
            ("da", da),
            ("da", en),  # English answer to a Danish prompt
            ("da", "1. 12345\n2. 67890"),  # nothing to identify
        ]
    )
    parsed, counters = parse_responses(table, min_items=2, identifier=IDENTIFIER)
    assert parsed["response_id"].unique().sort().to_list() == ["m/da/p3/0", "m/en/p0/0"]
    assert parsed.filter(pl.col("response_id") == "m/en/p0/0")["item_index"].to_list() == [1, 2]
    assert set(parsed["n_items"]) == {2}
    en_c, da_c = counters[("m", "en")], counters[("m", "da")]
    assert (en_c.total, dict(en_c.reasons)) == (3, {"empty": 1, "no_list": 1})
    assert (da_c.total, dict(da_c.reasons)) == (3, {"wrong_language": 1, "language_unknown": 1})
    drops = drops_frame(counters)
    assert set(drops.columns) >= {
        "stage",
        "group",
        "reason",
        "dropped",
        "total",
        "model",
        "language",
    }
    assert drops.filter(pl.col("reason") == "wrong_language")["group"].to_list() == ["m/da"]
    # min_items, and the language check switched off
    parsed, counters = parse_responses(table, min_items=3, identifier=None)
    assert parsed.height == 0 and counters[("m", "en")].reasons["no_list"] == 2
    with pytest.raises(ConfigError, match="min_items"):
        parse_responses(table, min_items=0, identifier=None)


def test_identifier_rejects_unsupported_candidates():
    with pytest.raises(ConfigError, match="extra_languages"):
        LanguageIdentifier(("en", "xx")).identify("hello there")


def test_response_file_with_wrong_columns(repo_root: Path, tmp_path: Path):
    path = tmp_path / "responses.parquet"
    responses_table([("en", "1. a\n2. b")]).drop("response").write_parquet(path)
    with pytest.raises(Exception, match="missing column.*'response'"):
        read_table(path, repo_root / "schemas/tables/wvs_responses.schema.yaml")


def test_real_responses(shared_data: Path, capsys: pytest.CaptureFixture[str]):
    """The 200 released responses (4 languages): share parsed, items per response, languages."""
    rows = [
        json.loads(line) for line in (shared_data / "rystrom2025/example-json-prompts.jsonl").open()
    ]
    assert len(rows) == 200
    items = [split_numbered(r["response"]) for r in rows]
    n_items = Counter(len(i) for i in items)
    parsed = [i for i in items if len(i) >= 2]
    share = len(parsed) / len(rows)
    languages = IDENTIFIER.identify_many(["\n".join(i) for i in parsed])
    by_language = Counter(languages)
    with capsys.disabled():
        print(
            f"\nparsed {len(parsed)}/{len(rows)} real responses ({share:.1%}); "
            f"items per response {dict(sorted(n_items.items()))}; languages {dict(by_language)}"
        )
    assert share >= 0.95
    assert n_items[10] >= 150  # almost every response lists ten interviews
    assert all(2 <= len(i) <= 10 for i in parsed)
    assert set(by_language) == {"da", "en", "nl", "pt"}
    assert min(by_language.values()) >= 30
    # the summaries are the interviews, not the preamble or a closing note
    assert not any(
        i[0].lower().startswith(("here are", "her er", "hier zijn", "aqui")) for i in parsed
    )
    # each response's language agrees with its (translated) topic's where lingua can tell
    topics = IDENTIFIER.identify_many(
        [r["topic"] for r, i in zip(rows, items, strict=True) if len(i) >= 2]
    )
    agree = sum(a == b for a, b in zip(languages, topics, strict=True)) / len(languages)
    assert agree >= 0.85
