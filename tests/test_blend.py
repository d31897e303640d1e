"""BLEnD prompts, cleaning, lemmatization and the SEM-B / SEM-W scorer on the project's demo set
and on hand-made cases (the real-data checks are in test_blend_reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from polyculture import blend
from polyculture.blend import Cluster, Question
from polyculture.errors import InputError


@pytest.fixture(scope="module")
def demo_blend(repo_root: Path) -> Path:
    return repo_root / "resources" / "demo" / "blend"


def _q(clusters, idk=0, no_answer=0, not_applicable=0, qid="q1") -> Question:
    return Question(qid, tuple(Cluster(*c) for c in clusters), idk, no_answer, not_applicable)


# ----------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("response", "prompt", "expected"),
    [
        ("Answer: Eggs.", "Question: What?\nAnswer:", "eggs"),
        # the label is removed only when its word occurs in the prompt
        ("Note: eggs", "Question: What?\nAnswer:", "note: eggs"),
        ("Απάντηση: Κουλούρι.", "Ερώτηση: Τι;\nΑπάντηση:", "κουλούρι"),
        ("답: 떡국", "질문: 무엇?\n답:", "떡국"),
        # an echo of the prompt is removed before anything else
        ("Question: What?\nAnswer: Rice", "Question: What?\nAnswer:", "rice"),
        # full-width punctuation is mapped; surrounding periods and spaces go; as in the
        # released code a label needs a space after its colon
        ("答案： 饺子。", "问题：什么？\n答案：", "饺子"),
        ("答案：饺子。", "问题：什么？\n答案：", "答案:饺子"),
        ("  ...Pancakes...  ", "", "pancakes"),
        ("", "Answer:", ""),
        (None, "Answer:", ""),
    ],
)
def test_clean_response(response, prompt, expected) -> None:
    assert blend.clean_response(response, prompt) == expected


# ----------------------------------------------------------------------------- tokens


def test_analyzers_per_language() -> None:
    assert blend.analyzer_name("en") == "simplemma"
    assert blend.analyzer_name("el") == "simplemma"
    assert blend.analyzer_name("zh") == "jieba"
    assert blend.analyzer_name("as") == "fallback"
    assert blend.analyzer_name("ha") == "fallback"
    pytest.importorskip("kiwipiepy")
    assert blend.analyzer_name("ko") == "kiwipiepy"


def test_lemma_tokens_lemmatize_strip_accents_and_drop_punctuation() -> None:
    assert blend.lemma_tokens("Scrambled eggs!", "en") == ("scramble", "egg")
    assert blend.lemma_tokens("Ελληνικός καφές.", "el") == ("ελληνικος", "καφες")
    assert blend.lemma_tokens("我们吃饺子。", "zh")[-1] != "。"
    # fallback: split on spaces and punctuation, keep vowel signs inside words
    assert blend.lemma_tokens("ভাত, মাছ আৰু-দৈ", "as") == ("ভাত", "মাছ", "আৰু", "দৈ")
    assert blend.strip_accents("Καφές café") == "Καφες cafe"
    assert blend.strip_accents("떡국") == "떡국"


def test_korean_tokens_drop_particles_and_endings() -> None:
    pytest.importorskip("kiwipiepy")
    assert blend.lemma_tokens("떡국을 먹는다", "ko") == ("떡국", "먹다")
    assert blend.lemma_tokens("떡국 먹어요", "ko") == ("떡국", "먹다")


# ----------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("answer", "response", "language", "expected"),
    [
        ("Coffee", "i drink coffee every day", "en", True),  # answers are lowercased
        ("black-eyed peas", "we eat black eyed peas", "en", True),  # hyphen → space
        ("twenty two", "at twenty-two", "en", True),  # space → hyphen
        ("scrambled eggs", "they scramble an egg", "en", True),  # lemmas
        ("scrambled eggs", "they scramble toast", "en", False),  # every token needed
        ("καφές", "ελληνικος καφες", "el", True),  # accents stripped
        ("κέικ ", "ένα κέικ", "el", True),  # annotators' trailing spaces
        ("", "anything", "en", False),  # empty answers never match
        ("...", "...", "en", True),  # a substring still matches
        ("?!", "yes", "en", False),  # no tokens: no match
        ("rice", "", "en", False),
    ],
)
def test_answer_matches(answer, response, language, expected) -> None:
    assert blend.answer_matches(answer, response, language) is expected


def test_korean_match_through_morphemes() -> None:
    pytest.importorskip("kiwipiepy")
    assert "떡국을 먹는다" not in "설날에는 떡국 먹어요"
    assert blend.answer_matches("떡국을 먹는다", "설날에는 떡국 먹어요", "ko")


def test_clusters_are_walked_in_vote_order() -> None:
    q = _q([(("σουβλάκι",), ("souvlaki",), 4), (("γύρος",), ("gyros",), 2)])
    # mentions both clusters: the top one wins
    m = blend.match_question(q, "γύρος ή σουβλάκι", "el", "el")
    assert (m.rank, m.weight, m.via) == (0, 1.0, "local")
    m = blend.match_question(q, "γύρος", "el", "el")
    assert (m.rank, m.weight, m.answer) == (1, 0.5, "γύρος")
    # local runs fall back to a cluster's English answers, before the next cluster
    m = blend.match_question(q, "gyros με souvlaki", "el", "el")
    assert (m.rank, m.via, m.answer) == (0, "en", "souvlaki")
    # English runs never use the local answers
    assert blend.match_question(q, "σουβλάκι", "en", "el") is None
    assert blend.match_question(q, "", "el", "el") is None


def test_parse_annotations_sorts_clusters_by_votes_stably(tmp_path: Path) -> None:
    data = {
        "a": {
            "annotations": [
                {"answers": ["x"], "en_answers": ["x"], "count": 1},
                {"answers": ["y"], "en_answers": ["y"], "count": 3},
                {"answers": ["z"], "en_answers": ["z"], "count": 1},
            ],
            "idks": {"idk": 0, "no-answer": 1},
        }
    }
    q = blend.parse_annotations(data, tmp_path / "X_data.json")["a"]
    assert [c.answers[0] for c in q.clusters] == ["y", "x", "z"]
    assert (q.top_count, q.no_answer, q.not_applicable) == (3, 1, 0)


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        (_q([(("a",), ("a",), 2)], no_answer=2, not_applicable=1), "no_answer_or_not_applicable"),
        (_q([(("a",), ("a",), 2)], no_answer=1, not_applicable=1), None),
        (_q([(("a",), ("a",), 2)], idk=5), "idk"),
        (_q([(("a",), ("a",), 2)], idk=4), None),
        (_q([]), "no_annotations"),
    ],
)
def test_skip_rules(question, reason) -> None:
    assert blend.skip_reason(question) == reason


# ----------------------------------------------------------------------------- demo data


def test_demo_prompts_follow_the_country_and_language(demo_blend: Path) -> None:
    assert blend.available_countries(demo_blend) == ["Greece", "South_Korea", "UK", "US"]
    assert blend.run_languages("US") == ["en"]
    assert blend.run_languages("South Korea") == ["en", "ko"]
    gr_q = blend.load_questions(blend.questions_path(demo_blend, "Greece"))
    gr_t = blend.load_prompt_templates(blend.prompts_path(demo_blend, "Greece"))
    el = blend.build_prompts(gr_q, gr_t, "Greece", "el", "inst-4")
    assert el["prompt"][0].startswith("Διάβασε") and gr_q["Question"][0] in el["prompt"][0]
    en = blend.build_prompts(gr_q, gr_t, "Greece", "en", "pers-3")
    assert en["prompt"][0].endswith("What is a common breakfast food in Greece?")
    assert en.columns == ["ID", "country", "language", "prompt_id", "question", "prompt"]
    us_q = blend.load_questions(blend.questions_path(demo_blend, "US"))
    us = blend.build_prompts(
        us_q,
        blend.load_prompt_templates(blend.prompts_path(demo_blend, "US")),
        "US",
        "en",
        "inst-4",
    )
    assert us.height == 19 and "in the US?" in us["prompt"][0]
    with pytest.raises(InputError, match="not asked"):
        blend.build_prompts(us_q, {}, "US", "el", "inst-4")
    with pytest.raises(InputError, match="pers-9"):
        blend.build_prompts(gr_q, gr_t, "Greece", "en", "pers-9")


def test_country_prompts_are_the_runs_in_order(demo_blend: Path) -> None:
    runs = [["en", "pers-3"], ["el", "inst-4"]]
    got = blend.country_prompts(demo_blend, "Greece", runs, 5)
    questions = blend.load_questions(blend.questions_path(demo_blend, "Greece")).head(5)
    templates = blend.load_prompt_templates(blend.prompts_path(demo_blend, "Greece"))
    expected = pl.concat(
        [blend.build_prompts(questions, templates, "Greece", lang, tpl) for lang, tpl in runs]
    )
    assert got.equals(expected) and got.height == 10
    assert got["language"].to_list() == ["en"] * 5 + ["el"] * 5
    every = blend.load_questions(blend.questions_path(demo_blend, "Greece")).height
    assert every > 5 and blend.country_prompts(demo_blend, "Greece", runs).height == 2 * every


def test_score_run_by_hand_on_the_demo_us_set(demo_blend: Path) -> None:
    ann = blend.load_annotations(blend.annotations_path(demo_blend, "US"))
    assert len(ann) == 19
    valid = [q for q in ann if blend.skip_reason(ann[q]) is None]
    assert len(valid) == 16  # one question per skip rule is left out
    responses = {
        "demo-fo-01": "Answer: Scrambled eggs.",  # top (4/4)
        "demo-fo-02": "Tacos",  # 2/4
        "demo-sp-02": "soccer",  # tied second cluster: 3/3
        "demo-fa-01": "twenty two",  # 2/3 via the hyphen/space swap
        "demo-ho-02": "black eyed peas",  # top, hyphen/space swap
        "demo-wo-01": "sushi",  # no match
        "demo-le-01": "",  # empty: wrong
        "demo-sk-01": "square dance",  # skipped question: not scored
    }
    prompts = {k: "Question: ...\nAnswer:" for k in responses}
    pq = blend.score_run(
        ann, responses, country="US", language="en", prompt_id="inst-4", prompts=prompts
    )
    assert pq.height == 19
    s = blend.summarize(pq).row(0, named=True)
    assert s["n_valid"] == 16 and s["n_answered"] == 6 and s["n_empty"] == 1 and s["n_missing"] == 9
    assert s["sem_b"] == pytest.approx(100 * 5 / 16)
    assert s["sem_w"] == pytest.approx(100 * (1 + 0.5 + 1 + 2 / 3 + 1) / 16)
    row = pq.filter(pl.col("ID") == "demo-sk-01").row(0, named=True)
    assert (row["valid"], row["skip_reason"], row["match"]) == (
        False,
        "no_answer_or_not_applicable",
        None,
    )
    row = pq.filter(pl.col("ID") == "demo-fa-01").row(0, named=True)
    assert (row["cluster_rank"], row["cluster_count"], row["top_count"]) == (1, 2, 3)


def test_local_run_on_the_demo_greek_set(demo_blend: Path) -> None:
    ann = blend.load_annotations(blend.annotations_path(demo_blend, "Greece"))
    responses = {
        "demo-fo-01": "Απάντηση: Κουλουρι",  # local answer without the accent
        "demo-fo-04": "Greek coffee",  # English answer in a Greek run
        "demo-sp-01": "Μπάσκετ.",  # second cluster: 3/5
    }
    prompts = {k: "Ερώτηση: ...\nΑπάντηση:" for k in responses}
    s = blend.summarize(
        blend.score_run(ann, responses, country="Greece", language="el", prompts=prompts)
    )
    assert s["n_valid"][0] == 16
    assert s["sem_b"][0] == pytest.approx(100 * 3 / 16)
    assert s["sem_w"][0] == pytest.approx(100 * (1 + 1 + 0.6) / 16)
    with pytest.raises(InputError, match="no annotation"):
        blend.score_run(ann, {"nope": "x"}, country="Greece", language="el")
    with pytest.raises(InputError, match="not asked"):
        blend.score_run(ann, {}, country="Greece", language="ko")


def test_score_responses_rebuilds_prompts_and_groups_runs(demo_blend: Path) -> None:
    table = pl.DataFrame(
        {
            "ID": ["demo-fo-01", "demo-fo-01", "demo-ho-01", "demo-fo-01"],
            "country": ["South Korea", "South_Korea", "South_Korea", "US"],
            "language": ["Korean", "en", "ko", "English"],
            "prompt_id": ["inst-4", "inst-4", "inst-4", "pers-3"],
            "response": ["답: 밥을 먹어요", "Rice", "추석", "eggs"],
        }
    )
    scores, pq = blend.score_responses(table, demo_blend)
    assert scores.select("country", "language", "prompt_id").rows() == [
        ("South_Korea", "en", "inst-4"),
        ("South_Korea", "ko", "inst-4"),
        ("US", "en", "pers-3"),
    ]
    ko = pq.filter((pl.col("language") == "ko") & pl.col("response").is_not_null())
    assert sorted(ko["cleaned"].to_list()) == [
        "밥을 먹어요",
        "추석",
    ]  # label removed: '답' is in the prompt
    assert scores["sem_b"].to_list() == pytest.approx([100 / 16, 200 / 16, 100 / 16])
    assert scores["sem_w"][1] == pytest.approx(100 * (1 + 4 / 5) / 16)
    assert list(scores.columns) == list(blend.SCORE_SCHEMA)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"ID": ["a"], "country": ["US"], "language": ["en"]}, "missing column.*response"),
        (
            {"ID": ["a"], "country": ["Atlantis"], "language": ["en"], "response": ["x"]},
            "row 1: country 'Atlantis'",
        ),
        (
            {"ID": ["a"], "country": ["US"], "language": ["Greek"], "response": ["x"]},
            "row 1: language 'Greek' is not asked in US",
        ),
        (
            {
                "ID": ["a", ""],
                "country": ["US", "US"],
                "language": ["en", "en"],
                "response": ["x", "y"],
            },
            "row 2: column 'ID' is empty",
        ),
        (
            {
                "ID": ["demo-fo-01", "demo-fo-01"],
                "country": ["US", "US"],
                "language": ["en", "English"],
                "response": ["x", "y"],
            },
            "demo-fo-01 .* more than one response \\(rows 1, 2\\)",
        ),
        (
            {"ID": ["zz-99"], "country": ["US"], "language": ["en"], "response": ["x"]},
            "no annotation, e.g. zz-99",
        ),
    ],
)
def test_bad_response_tables_name_the_row(demo_blend: Path, table, match) -> None:
    with pytest.raises(InputError, match=match):
        blend.score_responses(pl.DataFrame(table), demo_blend, source="resp.csv")


def test_bad_annotation_files_name_file_and_question(tmp_path: Path) -> None:
    path = tmp_path / "US_data.json"
    path.write_text(json.dumps({"q1": {"annotations": []}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"US_data.json: question q1: missing key 'idks'"):
        blend.load_annotations(path)
    path.write_text(
        json.dumps(
            {
                "q1": {
                    "annotations": [{"answers": ["a"], "en_answers": ["a"], "count": "2"}],
                    "idks": {},
                }
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"question q1, annotation 0.count"):
        blend.load_annotations(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        blend.load_annotations(path)
    with pytest.raises(InputError, match="does not exist"):
        blend.load_annotations(tmp_path / "nope.json")


def test_prompt_templates_first_row_wins_and_slot_is_checked_on_use(tmp_path: Path) -> None:
    path = tmp_path / "Greece_prompts.csv"
    pl.DataFrame(
        {
            "id": ["inst-4", "inst-4", "pers-1"],
            "English": ["A {q}", "B {q}", "C {q}"],
            "Translation": ["Α {q}", "Β {q}", "Γ χωρίς θέση"],
        }
    ).write_csv(path)
    templates = blend.load_prompt_templates(path)
    assert templates["inst-4"] == ("A {q}", "Α {q}")
    questions = pl.DataFrame({"ID": ["x"], "Question": ["Ερώτηση;"], "Translation": ["Question?"]})
    assert (
        blend.build_prompts(questions, templates, "Greece", "el", "inst-4")["prompt"][0]
        == "Α Ερώτηση;"
    )
    assert (
        blend.build_prompts(questions, templates, "Greece", "en", "pers-1")["prompt"][0]
        == "C Question?"
    )
    with pytest.raises(InputError, match=r"'pers-1' \(Translation column\) has no \{q\} slot"):
        blend.build_prompts(questions, templates, "Greece", "el", "pers-1")
