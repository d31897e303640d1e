"""blend-mcq: the offline multiple-choice construction against the official rules
(nlee0212/BLEnD evaluation/multiple_choice_generation.py), the official answer parsing, scoring,
reading a released file, and the construction on the real BLEnD release (skipped without it)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from polyculture.blend import Cluster, Question
from polyculture.errors import ConfigError, InputError
from polyculture.evals import load_benchmark
from polyculture.evals.blend_mcq.construction import (
    MC_COLUMNS,
    build_mc_questions,
    country_options,
    english_votes,
    keeps_question,
    no_common_word,
    parse_choice,
    question_rows,
    read_mc_questions,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo" / "blend"
DEMO_COUNTRIES = ["US", "UK", "Greece", "South_Korea"]
SPEC = load_benchmark(
    "blend-mcq", {"data": {"path": str(DEMO)}, "groups": {"values": DEMO_COUNTRIES}}
)
TEMPLATES = SPEC.settings["prompts"]


def q(*clusters: tuple[str, int], idk: int = 0, no_answer: int = 0, na: int = 0) -> Question:
    return Question(
        "q1",
        tuple(Cluster((a,), (a,), n) for a, n in clusters),
        idk=idk,
        no_answer=no_answer,
        not_applicable=na,
    )


@pytest.mark.parametrize(
    ("a", "b", "apart"),
    [
        ("rice", "bread", True),
        ("apple", "apple pie", False),  # one contains the other
        ("green tea", "black tea", False),  # a shared word
        ("fish/chips", "chips salad", False),  # '/' splits words too
        ("1", "1.0", False),  # numbers by value
        ("2", "3", True),
        ("Rice", "rice cake", True),  # case-sensitive, as the official code
    ],
)
def test_no_common_word_follows_the_official_rule(a: str, b: str, apart: bool) -> None:
    assert no_common_word(a, b) is apart


def test_question_filter_drops_na_idk_and_weak_top_answers() -> None:
    ok = q(("rice", 3))
    assert keeps_question({"US": ok, "UK": ok}, min_votes=2, max_idk=2)
    assert not keeps_question({"US": ok, "UK": q(("rice", 3), na=1)}, 2, 2)
    assert not keeps_question({"US": ok, "UK": q(("rice", 3), idk=2, no_answer=1)}, 2, 2)
    assert keeps_question({"US": ok, "UK": q(("rice", 3), idk=2)}, 2, 2)  # > 2, not >= 2
    assert not keeps_question({"US": ok, "UK": q(("rice", 1), ("bread", 1))}, 2, 2)


def test_votes_skip_clusters_without_english_answers() -> None:
    question = Question("q", (Cluster(("x",), (), 5), Cluster(("y",), ("rice",), 2)), 0, 0, 0)
    assert english_votes(question) == {"rice": 2}


def test_distractors_one_per_country_in_vote_order_apart_from_every_answer() -> None:
    votes = {
        "US": {"eggs": 4, "toast": 2},
        "UK": {"toast": 5, "porridge": 3},  # toast is a US answer: blocked; porridge taken
        "Greece": {"koulouri": 2, "egg salad": 4},  # 'egg salad' shares no word with 'eggs'
        "South_Korea": {"rice": 1, "kimchi": 3},  # rice has < 2 votes
    }
    side = country_options("What is a common breakfast food in the US?", "US", votes, min_votes=2)
    assert side is not None
    assert side.answers == ("eggs",)
    assert side.choices == {"UK": "porridge", "Greece": "egg salad", "South_Korea": "kimchi"}


def test_a_distractor_sharing_a_word_with_a_chosen_one_is_blocked() -> None:
    votes = {"US": {"eggs": 3}, "UK": {"green tea": 4}, "Greece": {"black tea": 3}}
    side = country_options("q", "US", votes, min_votes=2)
    assert side is not None and side.choices == {"UK": "green tea"}


def test_time_questions_keep_time_answers_only() -> None:
    votes = {"US": {"07:00": 3, "early": 3}, "UK": {"08:00": 2, "late": 4}}
    side = country_options("At what time (HH:MM) do people wake up?", "US", votes, 2)
    assert side is not None and side.answers == ("07:00",) and side.choices == {"UK": "08:00"}


def test_rows_are_alphabetical_with_the_official_prompt_and_ids() -> None:
    from polyculture.evals.blend_mcq.construction import CountryOptions

    sides = {
        "US": CountryOptions(("toast",), {"UK": "beans", "Greece": "yogurt"}),
        "UK": CountryOptions(("beans",), {"US": "toast", "Greece": "yogurt"}),
        "Greece": CountryOptions(("yogurt",), {"US": "toast"}),
    }
    texts = {c: f"What do people eat in {c}?" for c in sides}
    rows = question_rows("q9", texts, sides, ["US", "UK", "Greece"], TEMPLATES, 3, 1)
    # k = 1 (Greece has one distractor): US and UK two prompts each, Greece one
    assert [r["MCQID"] for r in rows] == ["q9_0", "q9_1", "q9_2", "q9_3", "q9_4"]
    first = rows[0]
    assert first["prompt"] == (
        "What do people eat in US? Without any explanation, choose only one from the given "
        'alphabet choices(e.g., A, B, C). Provide as JSON format: {"answer_choice":""}\n\n'
        "A. beans\nB. toast\n\nAnswer:"
    )
    assert json.loads(first["choices"]) == {"A": "beans", "B": "toast"}
    assert json.loads(first["choice_countries"]) == {"A": "UK", "B": "US"}
    assert first["answer_idx"] == "B"
    assert question_rows("q9", texts, sides, ["US", "UK", "Greece"], TEMPLATES, 3, 2) == []


CHOICES = {"A": "beans", "B": "toast", "C": "yogurt"}
PROMPT = "Q? ...\n\nA. beans\nB. toast\nC. yogurt\n\nAnswer:"


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ('{"answer_choice":"B"}', "B"),
        ('```json\n{"answer_choice": "C. yogurt"}\n```', "C"),
        ('{"answer_choice":"toast"}', "B"),  # lowercase text: the option it names
        ("B", "B"),  # no JSON: the first capital letter
        ("The answer is B", None),  # 'T' is offered nowhere
        ('{"choice":"B"}', None),
        ("", None),
        ('{"answer_choice":"beans"', None),  # no closing brace: the text, without a capital
    ],
)
def test_parse_choice_reads_replies_as_the_official_code(reply: str, letter: str | None) -> None:
    assert parse_choice(reply, PROMPT, CHOICES) == letter


def test_unparseable_and_missing_answers_are_wrong_and_dropped() -> None:
    items = SPEC.implementation().items(SPEC.settings)
    first, second = items["item_id"][0], items["item_id"][1]
    answer = items["answer_idx"][0]
    responses = pl.DataFrame(
        {"item_id": [first, second], "response": [json.dumps({"answer_choice": answer}), "no idea"]}
    )
    scores = SPEC.implementation().score(items, responses, SPEC.settings)
    assert scores.height == items.height
    row = scores.filter(pl.col("item_id") == first).row(0, named=True)
    assert row["accuracy"] == 1.0 and not row["dropped"]
    rest = scores.filter(pl.col("item_id") != first)
    assert rest["accuracy"].sum() == 0 and rest["dropped"].all()


def test_demo_items_cover_every_country_with_options_from_the_others() -> None:
    items = SPEC.implementation().items(SPEC.settings)
    assert set(items["group"]) == set(DEMO_COUNTRIES)
    for r in items.iter_rows(named=True):
        countries = json.loads(r["choice_countries"])
        assert countries[r["answer_idx"]] == r["group"]
        assert sum(c == r["group"] for c in countries.values()) == 1
        options = list(json.loads(r["choices"]).values())
        assert options == sorted(options)


def test_released_file_is_read_in_the_official_format(tmp_path: Path) -> None:
    built = build_mc_questions(DEMO, DEMO_COUNTRIES, TEMPLATES)
    path = tmp_path / "mc_questions_file.csv"
    built.write_csv(path)
    spec = load_benchmark(
        "blend-mcq", {"data": {"mc_questions_file": str(path)}, "groups": {"values": ["US", "UK"]}}
    )
    spec.implementation().check(spec.settings)
    items = spec.implementation().items(spec.settings)
    assert (
        items["item_id"].to_list()
        == built.filter(pl.col("country").is_in(["US", "UK"]))["MCQID"].to_list()
    )
    built.drop("answer_idx").write_csv(path)
    with pytest.raises(InputError, match="answer_idx"):
        read_mc_questions(path, ["US"])
    built.write_csv(path)
    with pytest.raises(InputError, match="Spain"):
        read_mc_questions(path, ["US", "Spain"])


def test_check_names_the_key_and_file_of_a_missing_country() -> None:
    spec = load_benchmark(
        "blend-mcq", {"data": {"path": str(DEMO)}, "groups": {"values": ["US", "Spain"]}}
    )
    with pytest.raises(ConfigError, match=r"groups.values.*Spain.*Spain_questions.csv"):
        spec.implementation().check(spec.settings)
    spec = load_benchmark("blend-mcq", {"groups": {"values": ["US", "UK"]}})
    with pytest.raises(ConfigError, match="data.path"):
        spec.implementation().check(spec.settings)


def test_real_blend_release_builds_official_format(shared_data: Path) -> None:
    data = shared_data / "blend"
    if not (data / "annotations").is_dir():
        pytest.skip(f"{data} is absent")
    spec = load_benchmark("blend-mcq", {"data": {"path": str(data)}})
    countries = spec.groups
    mc = build_mc_questions(data, countries, TEMPLATES, max_questions=120)
    assert mc.columns == list(MC_COLUMNS) and mc.height > 0
    assert set(mc["country"]) == set(countries)
    from polyculture.blend import annotations_path, load_annotations

    ann = {c: load_annotations(annotations_path(data, c)) for c in countries}
    for r in mc.iter_rows(named=True):
        choices, owners = json.loads(r["choices"]), json.loads(r["choice_countries"])
        # at most three distractors (the official max), letters from A, alphabetical options
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        assert 2 <= len(choices) <= 4 and list(choices) == letters
        assert list(choices.values()) == sorted(choices.values())
        assert owners[r["answer_idx"]] == r["country"]
        assert f"\n{r['answer_idx']}. {choices[r['answer_idx']]}\n" in r["prompt"]
        votes = {c: english_votes(ann[c][r["ID"]]) for c in countries}
        assert votes[r["country"]][choices[r["answer_idx"]]] == max(votes[r["country"]].values())
        for letter, owner in owners.items():
            if letter != r["answer_idx"]:
                assert owner != r["country"] and votes[owner][choices[letter]] >= 2
                assert all(no_common_word(choices[letter], mine) for mine in votes[r["country"]])
        assert r["MCQID"].startswith(f"{r['ID']}_")
