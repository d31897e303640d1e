"""Ground truth into the weak language (skip rule), the seeded weak answer m_k, critiques."""

from __future__ import annotations

import polars as pl
import pytest

from polyculture.consensus.critiques import (
    already_in_language,
    collect_critiques,
    critique_conversations,
    pick_weak_answers,
    translation_plan,
)
from polyculture.errors import InputError


def test_already_in_language_needs_a_confident_detector():
    greek = "Το Πάσχα οι οικογένειες ψήνουν αρνί στη σούβλα και τρώνε μαζί στην αυλή."
    english = "At Easter, families roast lamb on a spit and eat together in the yard."
    assert already_in_language(greek, "el", "en", 0.9)
    assert not already_in_language(english, "el", "en", 0.9)
    assert already_in_language(english, "en", "el", 0.9)
    # Sundanese is unknown to the detector: no evidence, so the text is translated
    assert not already_in_language(english, "su", "en", 0.9)
    assert not already_in_language("   ", "el", "en", 0.9)
    assert already_in_language("anything", "el", "el", 0.9)


def test_translation_plan_skips_ground_truths_already_in_the_weak_language():
    table = pl.DataFrame(
        {
            "gt_text": [
                "Families roast lamb on a spit at Easter and eat it together.",
                "Οι οικογένειες ψήνουν αρνί στη σούβλα το Πάσχα και το τρώνε μαζί.",
                "Οι οικογένειες ψήνουν αρνί στη σούβλα το Πάσχα και το τρώνε μαζί.",
            ],
            "strong_language": ["en", "en", "el"],
            "weak_language": ["el", "el", "en"],
        }
    )
    # row 2: the English side's g* was written in Greek, the weak language: no translation
    assert translation_plan(table, 0.9) == [True, False, True]


def _responses() -> pl.DataFrame:
    rows = []
    for q in ("a", "b"):
        for side, lang in (("en", "en"), ("local", "el")):
            for s in range(4):
                rows.append(
                    {
                        "question_id": q,
                        "side": side,
                        "language": lang,
                        "sample": s,
                        "text": f"{q}-{side}-{s}",
                    }
                )
    return pl.DataFrame(rows)


def _samples(exclude: set[tuple[str, str, int]]) -> pl.DataFrame:
    rows = [
        {"question_id": q, "side": side, "sample": s, "mean_similarity": 0.5}
        for q in ("a", "b")
        for side in ("en", "local")
        for s in range(4)
        if (q, side, s) not in exclude
    ]
    return pl.DataFrame(rows)


def test_weak_answer_is_a_seeded_draw_among_usable_samples():
    gt = pl.DataFrame({"question_id": ["a", "b"], "weak_side": ["local", "en"]})
    usable = _samples({("a", "local", 0), ("a", "local", 1), ("a", "local", 3)})
    picked = pick_weak_answers(gt, usable, _responses(), seed=3)
    assert picked.row(0, named=True)["weak_sample"] == 2  # the only usable local sample of 'a'
    assert picked.row(0, named=True)["weak_answer"] == "a-local-2"
    assert picked.row(1, named=True)["weak_answer"].startswith("b-en-")
    assert picked.equals(pick_weak_answers(gt, usable, _responses(), seed=3))
    draws = {
        pick_weak_answers(gt, usable, _responses(), seed=s)["weak_sample"][1] for s in range(30)
    }
    assert draws == {0, 1, 2, 3}
    with pytest.raises(InputError, match="no usable sample"):
        pick_weak_answers(gt, usable.filter(pl.col("side") == "en"), _responses(), seed=3)


def test_critique_prompt_names_the_weak_language_and_blank_critiques_are_dropped():
    table = pl.DataFrame(
        {
            "question_id": ["a", "b"],
            "question_weak": ["Τι τρώνε;", "What is eaten?"],
            "weak_answer": ["ψωμί", "bread"],
            "gt_weak": ["αρνί", "lamb"],
            "weak_language": ["el", "en"],
        }
    )
    convs = critique_conversations(table, "Q: {question} A: {answer} R: {reference} in {language}")
    assert convs[0][0]["content"] == "Q: Τι τρώνε; A: ψωμί R: αρνί in Greek"
    out, drops = collect_critiques(table, [["Η απάντηση είναι λάθος."], ["  "]])
    assert out["question_id"].to_list() == ["a"] and drops.reasons == {"empty_critique": 1}
    with pytest.raises(InputError, match="returned 1 critiques for 2"):
        collect_critiques(table, [["x"]])


def _culfit_table() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "question_id": ["a", "b", "c"],
            "question_weak": ["Τι τρώνε το Πάσχα;", "What is eaten at Easter?", "Q?"],
            "weak_answer": ["Ψάρι.", "Fish.", "A."],
            "gt_weak": ["Αρνί στη σούβλα.", "Lamb on a spit, eaten outdoors.", "R."],
            "weak_language": ["el", "en", "en"],
        }
    )


def test_culfit_critique_steps_extract_check_and_write_from_the_check():
    import json

    import jsonschema

    from polyculture.consensus.critiques import (
        collect_knowledge_points,
        collect_point_checks,
        critique_from_checks_conversations,
        knowledge_point_conversations,
        knowledge_points_schema,
        point_check_conversations,
        point_check_groups,
        point_checks_schema,
    )

    table = _culfit_table()
    template = "Q: {question} R: {reference} in {language}"
    convs = knowledge_point_conversations(table, template)
    assert convs[0][0]["content"] == "Q: Τι τρώνε το Πάσχα; R: Αρνί στη σούβλα. in Greek"
    # step 1: the knowledge points of g*, JSON-constrained; a reply that did not parse and one
    # with only blank points are dropped and counted
    replies = [
        [{"knowledge_points": ["Lamb is roasted on a spit.", " "]}],
        [{"knowledge_points": ["Lamb is eaten.", "It is eaten outdoors."]}],
        [None],
    ]
    schema = knowledge_points_schema(2, 40)
    jsonschema.validate(replies[1][0], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"knowledge_points": ["a", "b", "c"]}, schema)
    with_points, drops = collect_knowledge_points(table, replies)
    assert with_points["question_id"].to_list() == ["a", "b"]
    assert with_points["knowledge_points"].to_list()[0] == ["Lamb is roasted on a spit."]
    assert drops.reasons == {"invalid_json": 1}
    # step 2: the answer checked against each point, one schema per number of points
    assert point_check_groups(with_points) == {1: [0], 2: [1]}
    checks_conv = point_check_conversations(
        with_points, "{answer} vs {n_points} points:\n{points} ({language})"
    )
    assert checks_conv[1][0]["content"] == (
        "Fish. vs 2 points:\n1. Lamb is eaten.\n2. It is eaten outdoors. (English)"
    )
    two = point_checks_schema(2)
    with pytest.raises(jsonschema.ValidationError):  # one verdict per point, no more, no less
        jsonschema.validate({"checks": [{"verdict": "missing", "comment": ""}]}, two)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"checks": [{"verdict": "wrong", "comment": ""}] * 2}, two)
    checked, drops = collect_point_checks(
        with_points,
        [
            [{"checks": [{"verdict": "contradicted", "comment": "Fish, not lamb."}]}],
            [{"checks": [{"verdict": "missing", "comment": "No lamb."}]}],  # 1 check for 2
        ],
    )
    assert checked["question_id"].to_list() == ["a"]
    assert drops.reasons == {"wrong_number_of_checks": 1}
    assert json.loads(checked["point_checks"][0]) == [
        {
            "point": "Lamb is roasted on a spit.",
            "verdict": "contradicted",
            "comment": "Fish, not lamb.",
        }
    ]
    # step 3: the critique is written from the check
    final = critique_from_checks_conversations(checked, "{question}|{answer}|{checks}|{language}")
    assert final[0][0]["content"] == (
        "Τι τρώνε το Πάσχα;|Ψάρι.|1. Lamb is roasted on a spit. — contradicted: Fish, not lamb."
        "|Greek"
    )


def test_culfit_is_the_default_critique_and_one_prompt_the_named_ablation():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (
            Path(__file__).resolve().parents[1] / "schemas" / "config-consensus.schema.yaml"
        ).read_text(encoding="utf-8")
    )
    method = schema["properties"]["critique_method"]
    assert method["default"] == "culfit" and method["enum"] == ["culfit", "one_prompt"]
    assert "CulFiT" in method["description"]


class _ScriptedGenerator:
    """Replies from a script, in call order, and records what each call asked (the loop's
    dispatch is under test here; the demo workflow runs it with a real model)."""

    def __init__(self, replies: list[list]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, int, dict | None]] = []

    def generate_json(self, conversations, schema, n, sampling):
        self.calls.append(("json", len(conversations), schema))
        return self.replies.pop(0)

    def generate(self, conversations, n, sampling):
        self.calls.append(("text", len(conversations), None))
        return self.replies.pop(0)


def test_critique_loop_runs_culfit_steps_and_one_prompt():
    import json

    from polyculture.consensus.critiques import critique_weak_answers, point_checks_schema

    culfit = {
        "knowledge_points_prompt": "{question} {reference} {language}",
        "check_prompt": "{answer} {n_points} {points} {language}",
        "critique_prompt": "{question} {answer} {checks} {language}",
        "max_knowledge_points": 3,
        "max_chars": 80,
    }
    generator = _ScriptedGenerator(
        [
            [[{"knowledge_points": ["Lamb."]}], [{"knowledge_points": ["Lamb.", "Outdoors."]}]]
            + [[None]],
            [[{"checks": [{"verdict": "contradicted", "comment": "Fish."}]}]],
            [[{"checks": [{"verdict": "missing", "comment": ""}] * 2}]],
            [["Wrong: lamb, not fish."], ["Lamb, outdoors."]],
        ]
    )
    out, counters = critique_weak_answers(
        generator, _culfit_table(), "culfit", "unused", culfit, None
    )
    assert [c[:2] for c in generator.calls] == [("json", 3), ("json", 1), ("json", 1), ("text", 2)]
    assert generator.calls[1][2] == point_checks_schema(1, 80)
    assert out["question_id"].to_list() == ["a", "b"]
    assert json.loads(out["knowledge_points"][1]) == ["Lamb.", "Outdoors."]
    assert [c.reasons for c in counters] == [{"invalid_json": 1}, {}, {}]

    generator = _ScriptedGenerator([[["Η απάντηση είναι λάθος."], [" "], ["ok"]]])
    out, counters = critique_weak_answers(
        generator,
        _culfit_table(),
        "one_prompt",
        "{question}{answer}{reference}{language}",
        {},
        None,
    )
    assert generator.calls == [("text", 3, None)] and out["question_id"].to_list() == ["a", "c"]
    assert [c.reasons for c in counters] == [{"empty_critique": 1}]

    empty = _culfit_table().head(0)
    for method in ("culfit", "one_prompt"):
        out, counters = critique_weak_answers(None, empty, method, "", culfit, None)
        assert out.height == 0 and all(c.dropped == 0 for c in counters)
