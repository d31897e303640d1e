"""Paragraphs, the question JSON schema, question filters with drop reasons, bilingual pairs."""

from __future__ import annotations

import jsonschema
import polars as pl
import pytest

from polyculture.consensus.questions import (
    collect_pairs,
    collect_paragraphs,
    collect_questions,
    fill_template,
    paragraph_conversations,
    question_conversations,
    question_json_schema,
    region_list,
)
from polyculture.errors import ConfigError

REGIONS = ["Greece", "Japan", "South Korea", "Spain"]


def _paragraphs(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "statement_id": [f"s{i}" for i in range(n)],
            "country": ["Greece"] * n,
            "topic": ["food of Greece"] * n,
            "statement": ["Greeks eat lamb at Easter."] * n,
            "paragraph": ["At Easter, Greek families roast lamb outdoors."] * n,
        }
    )


def test_question_schema_constrains_count_country_and_language_shape():
    schema = question_json_schema(2, REGIONS, 50)
    ok = {
        "questions": [
            {"question": "What is roasted at Easter?", "country": "Greece", "language": "el"},
            {"question": "Who roasts it?", "country": "Greece", "language": "zz"},
        ]
    }
    jsonschema.validate(ok, schema)  # 'zz' has the shape of a code; ISO membership is checked later
    bad = [
        {"questions": ok["questions"][:1]},
        {"questions": [ok["questions"][0], {**ok["questions"][1], "country": "Atlantis"}]},
        {"questions": [ok["questions"][0], {**ok["questions"][1], "language": "ell"}]},
        {"questions": [ok["questions"][0], {**ok["questions"][1], "question": "x" * 51}]},
    ]
    for obj in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(obj, schema)
    with pytest.raises(ConfigError, match="k"):
        question_json_schema(0, REGIONS, 50)


def test_collect_questions_keeps_usable_ones_and_counts_every_drop_reason():
    paragraphs = _paragraphs(3)
    outputs = [
        [None],  # unparsable model JSON: all k questions of the paragraph are lost
        [
            {
                "questions": [
                    {
                        "question": "What is roasted at Easter?",
                        "country": "Greece",
                        "language": "el",
                    },
                    {"question": "Which day is it eaten?", "country": "Greece", "language": "xx"},
                    {"question": "Who cooks it?", "country": "Greece", "language": "en"},
                    {
                        "question": "what is roasted at easter?",
                        "country": "Greece",
                        "language": "el",
                    },
                ]
            }
        ],
        [
            {
                "questions": [
                    {"question": "  ", "country": "Greece", "language": "el"},
                    {
                        "question": "What do people eat at New Year?",
                        "country": "Japan",
                        "language": "ja",
                    },
                    {"question": "Where is it eaten?", "country": "Atlantis", "language": "el"},
                ]
            }
        ],
    ]
    questions, drops = collect_questions(
        paragraphs, outputs, k=4, regions=REGIONS, supports=lambda lang: lang in {"el", "es", "ko"}
    )
    assert questions["question_id"].to_list() == ["s1-q0"]
    assert questions.row(0, named=True)["language"] == "el"
    assert drops.total == 12
    assert dict(drops.reasons) == {
        "unparsable_json": 4,
        "language_not_iso": 1,
        "english_question": 1,
        "duplicate_question": 1,
        "empty_question": 1,
        "unsupported_language": 1,
        "unknown_country": 1,
        "missing_question": 1,
    }
    assert drops.dropped == 11


def test_region_list_default_and_configured():
    default = region_list([], ["Japan", "Greece"])
    assert "Japan" in default and "West Java" in default and len(default) == 17
    assert region_list(["United States", "Korea"], []) == ["South Korea", "US"]
    with pytest.raises(ConfigError, match=r"consensus\.regions\[0\]"):
        region_list(["Atlantis"], [])


def test_prompts_fill_placeholders_and_name_bad_ones():
    convs = question_conversations(_paragraphs(1), "Write {k} questions on {topic}: {paragraph}", 3)
    assert convs[0][0]["content"].startswith("Write 3 questions on food of Greece")
    statements = pl.DataFrame(
        {"statement_id": ["s"], "country": ["Greece"], "topic": ["t"], "text": ["x"]}
    )
    assert (
        paragraph_conversations(statements, "{statement} ({country})")[0][0]["content"]
        == "x (Greece)"
    )
    with pytest.raises(ConfigError, match="paragraphs.prompt.*placeholder"):
        paragraph_conversations(statements, "{nonsense}")
    assert fill_template("{{literal}} {a}", "k", a="b") == "{literal} b"


def test_blank_paragraphs_are_dropped():
    statements = pl.DataFrame(
        {
            "statement_id": ["a", "b"],
            "country": ["Greece"] * 2,
            "topic": ["t"] * 2,
            "text": ["x", "y"],
        }
    )
    table, drops = collect_paragraphs(statements, [["A paragraph."], ["   "]])
    assert table["statement_id"].to_list() == ["a"] and drops.reasons == {"empty_paragraph": 1}


def test_pairs_drop_blank_and_untranslated_questions():
    questions = pl.DataFrame(
        {
            "question_id": ["a", "b", "c"],
            "statement_id": ["s"] * 3,
            "country": ["Greece"] * 3,
            "language": ["el"] * 3,
            "question_en": ["What is eaten?", "Who cooks?", "Where?"],
        }
    )
    pairs, drops = collect_pairs(questions, ["Τι τρώγεται;", "", "Where?"])
    assert pairs["question_id"].to_list() == ["a"] and pairs["question_local"][0] == "Τι τρώγεται;"
    assert dict(drops.reasons) == {"empty_translation": 1, "translation_identical_to_source": 1}
