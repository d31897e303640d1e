"""BLEnD's multiple-choice questions, built offline by rules from the short-answer annotations
(after ``evaluation/multiple_choice_generation.py`` of nlee0212/BLEnD; the deviations are in
this folder's README), read from a released ``mc_questions_file*.csv``, and the official
parsing of a model's ``{"answer_choice": ...}`` reply."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.blend import (
    Question,
    annotations_path,
    load_annotations,
    load_questions,
    questions_path,
)
from polyculture.blend.data import read_csv_columns
from polyculture.errors import InputError

#: Columns of the official multiple-choice file (generate_multiple_choice's header).
MC_COLUMNS = ("MCQID", "ID", "country", "prompt", "choices", "choice_countries", "answer_idx")


def is_float(s: str) -> bool:
    """Whether `s` reads as a number (the official is_float: Python's float())."""
    try:
        float(s)
    except ValueError:
        return False
    return True


def is_time_format(s: str) -> bool:
    """HH:MM, two digits each (the official pattern)."""
    return re.fullmatch(r"\d\d:\d\d", s) is not None


def is_date_format(s: str) -> bool:
    """M/D with one or two digits each (the official pattern)."""
    return re.fullmatch(r"\d{1,2}/\d{1,2}", s) is not None


def _words(s: str) -> set[str]:
    return {w for part in s.split("/") for w in part.split()}


def no_common_word(a: str, b: str) -> bool:
    """Whether two options are told apart by words (the official no_common_word): numbers by
    value; otherwise neither contains the other and they share no word (split on '/' and
    whitespace, case-sensitive)."""
    if is_float(a) and is_float(b):
        return float(a) != float(b)
    if a in b or b in a:
        return False
    return not (_words(a) & _words(b))


def _format_of(question: str) -> Any:
    """The answer format a question asks for (HH:MM, MM/DD, Arabic numerals), or None."""
    if "HH:MM" in question:
        return is_time_format
    if "MM/DD" in question:
        return is_date_format
    if "Arabic" in question:
        return is_float
    return None


def english_votes(q: Question) -> dict[str, int]:
    """A country's answers to one question as the official construction reads them: each
    cluster's first English answer → its count, clusters without English answers left out (a
    later cluster with the same first answer replaces the earlier count, as a dict does)."""
    return {c.en_answers[0]: c.count for c in q.clusters if c.en_answers}


def keeps_question(by_country: Mapping[str, Question], min_votes: int, max_idk: int) -> bool:
    """The official filter_mc_questions: a question is dropped when, in any country, an
    annotator marked it not applicable or more than `max_idk` gave no answer (idk, no-answer,
    not-applicable together), or its top answer (with English text) has fewer than
    `min_votes` votes."""
    for q in by_country.values():
        if q.not_applicable > 0 or q.idk + q.no_answer + q.not_applicable > max_idk:
            return False
        if q.clusters and q.clusters[0].en_answers and q.clusters[0].count < min_votes:
            return False
    return True


@dataclass(frozen=True)
class CountryOptions:
    """One country's side of a question: its most-voted answers and one distractor per other
    country (country → option)."""

    answers: tuple[str, ...]
    choices: dict[str, str]


def country_options(
    question: str,
    country: str,
    votes: Mapping[str, Mapping[str, int]],
    min_votes: int,
) -> CountryOptions | None:
    """The official generate_answer_choices for one country, with its GPT-4 checks left out:
    the answers with the most votes (of the asked format), and from the other countries'
    answers with at least `min_votes` votes, in vote order, at most one per country, each
    sharing no word with any of this country's answers nor with an option already chosen.
    None where the country has no English answer."""
    own = dict(votes[country])
    if not own:
        return None
    fmt = _format_of(question)
    top = max(own.values())
    if fmt is not None:
        answers = [a for a, v in own.items() if v == top and fmt(a)]
        own = {a: v for a, v in own.items() if fmt(a)}
    else:
        answers = [a for a, v in own.items() if v == top]
    candidates = sorted(
        (
            (v, a, other)
            for other, other_votes in votes.items()
            if other != country
            for a, v in other_votes.items()
            if v >= min_votes
        ),
        key=lambda x: x[0],
        reverse=True,
    )
    choices: dict[str, str] = {}
    blocked: set[str] = set()
    for _, answer, other in candidates:
        if other in choices or answer in blocked:
            continue
        if fmt is not None and not fmt(answer):
            continue
        if not all(no_common_word(answer, mine) for mine in own):
            blocked.add(answer)
            continue
        if not all(no_common_word(chosen, answer) for chosen in choices.values()):
            blocked.add(answer)
            continue
        choices[other] = answer
    return CountryOptions(tuple(answers), choices)


def mc_prompt(question: str, options: Sequence[str], templates: Mapping[str, str]) -> str:
    """The official prompt: the question, the instruction, the lettered options, 'Answer:'."""
    body = "".join(
        templates["option"].format(letter=chr(ord("A") + i), option=o)
        for i, o in enumerate(options)
    )
    return question + templates["instruction"] + body + templates["suffix"]


def question_rows(
    qid: str,
    questions: Mapping[str, str],
    sides: Mapping[str, CountryOptions],
    countries: Sequence[str],
    templates: Mapping[str, str],
    max_distractors: int,
    min_distractors: int,
) -> list[dict[str, Any]]:
    """The official generate_multiple_choice for one question without invented dummy options:
    k = the fewest distractors any country has (at most `max_distractors`); for each country,
    each of its top answers and each combination of k of its distractors, one prompt with the
    options in alphabetical order. None when k < `min_distractors`."""
    k = min(min(len(sides[c].choices) for c in countries), max_distractors)
    if k < min_distractors:
        return []
    rows, n = [], 0
    for country in countries:
        side = sides[country]
        for answer in side.answers:
            for chosen in combinations(side.choices.items(), k):
                options = sorted([(v, c) for c, v in chosen] + [(answer, country)])
                letters = [chr(ord("A") + i) for i in range(len(options))]
                answer_idx = next(
                    letter for letter, (o, _) in zip(letters, options, strict=True) if o == answer
                )
                rows.append(
                    {
                        "MCQID": f"{qid}_{n}",
                        "ID": qid,
                        "country": country,
                        "prompt": mc_prompt(questions[country], [o for o, _ in options], templates),
                        "choices": json.dumps(
                            dict(zip(letters, [o for o, _ in options], strict=True)),
                            indent=4,
                            ensure_ascii=False,
                        ),
                        "choice_countries": json.dumps(
                            dict(zip(letters, [c for _, c in options], strict=True)),
                            indent=4,
                            ensure_ascii=False,
                        ),
                        "answer_idx": answer_idx,
                    }
                )
                n += 1
    return rows


def english_question(row: Mapping[str, str], country: str) -> str:
    """A question's English text in a country's file: the native text for UK and US, else the
    translation (the release names the country in each)."""
    return row["Question"] if country in ("UK", "US") else row["Translation"]


def build_mc_questions(
    data_dir: str | Path,
    countries: Sequence[str],
    templates: Mapping[str, str],
    *,
    min_votes: int = 2,
    max_idk: int = 2,
    max_distractors: int = 3,
    min_distractors: int = 1,
    max_questions: int | None = None,
) -> pl.DataFrame:
    """The multiple-choice questions of `countries` from the BLEnD short-answer data in
    `data_dir`, in the official file's columns (:data:`MC_COLUMNS`). A question is built when
    every country has it; questions in the first country's file order."""
    annotations = {c: load_annotations(annotations_path(data_dir, c)) for c in countries}
    texts = {
        c: {
            r["ID"]: english_question(r, c)
            for r in load_questions(questions_path(data_dir, c)).iter_rows(named=True)
        }
        for c in countries
    }
    order = list(texts[countries[0]])
    if max_questions is not None:
        order = order[:max_questions]
    rows: list[dict[str, Any]] = []
    for qid in order:
        if not all(qid in annotations[c] and qid in texts[c] for c in countries):
            continue
        by_country = {c: annotations[c][qid] for c in countries}
        if not keeps_question(by_country, min_votes, max_idk):
            continue
        votes = {c: english_votes(q) for c, q in by_country.items()}
        sides = {c: country_options(texts[c][qid], c, votes, min_votes) for c in countries}
        if any(s is None for s in sides.values()):
            continue
        rows += question_rows(
            qid,
            {c: texts[c][qid] for c in countries},
            {c: s for c, s in sides.items() if s is not None},
            countries,
            templates,
            max_distractors,
            min_distractors,
        )
    return pl.DataFrame(rows, schema=dict.fromkeys(MC_COLUMNS, pl.String))


def read_mc_questions(path: str | Path, countries: Sequence[str]) -> pl.DataFrame:
    """A released multiple-choice file in the official format, the rows of `countries`; fails
    naming the file when a column or a configured country is missing."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file does not exist (data.mc_questions_file)")
    df = read_csv_columns(p, MC_COLUMNS)
    absent = [c for c in countries if c not in set(df["country"].to_list())]
    if absent:
        raise InputError(p, f"no questions of {', '.join(absent)} (groups.values asks for them)")
    return df.select(MC_COLUMNS).filter(pl.col("country").is_in(list(countries)))


def first_json_object(response: str) -> Any:
    """The official get_json_str: newlines removed, the first {...} without nested braces
    parsed as JSON; the response text itself where there is none or it does not parse."""
    text = response.replace("\n", "")
    if "{" not in text:
        return text
    found = re.findall(r"{[^}]+}", text)
    if not found:
        return text
    candidate = found[0].replace("```json", "").replace("`", "").replace(",}", "}")
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        return text


def parse_choice(response: str, prompt: str, choices: Mapping[str, str]) -> str | None:
    """The letter a reply chooses, as the official get_model_mc_response reads it, or None
    when it names no offered option. From a JSON object's answer_choice: its first capital
    letter when the prompt offers it ("B."), else the option whose text the value is; without
    a JSON object, the reply's first capital letter."""
    found = first_json_object(response)
    if isinstance(found, dict):
        if "answer_choice" not in found:
            return None
        value = found["answer_choice"]
        letters = re.findall(r"[A-Z]", str(value))
        if letters and f"{letters[0]}." in prompt:
            letter: str | None = letters[0]
        else:
            letter = next((k for k, v in choices.items() if v == value), None)
    else:
        letters = re.findall(r"[A-Z]", str(found))
        letter = letters[0] if letters else None
    return letter if letter in choices else None
