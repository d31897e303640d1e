"""BLEnD prompts: the runs of a country (language x template), the prompts of a run, which
questions are skipped, and answering the prompts with a generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.backends.engine_job import PROMPT_FORMATS as PROMPT_FORMATS  # re-exported
from polyculture.backends.engine_job import single_turn_answers
from polyculture.blend.cleaning import clean_response
from polyculture.blend.data import (
    Question,
    load_prompt_templates,
    load_questions,
    prompts_path,
    questions_path,
)
from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.languages import BLEND_REGIONS, normalize_region

SKIP_NO_ANSWER_NA = 3  # skip when no-answer + not-applicable >= this


SKIP_IDK = 5  # skip when idk >= this


def run_languages(country: str) -> list[str]:
    """Languages a country is asked in: English, then its own language unless that is English."""
    country = normalize_region(country)
    if country not in BLEND_REGIONS:
        raise InputError(country, f"not a BLEnD region; expected one of {', '.join(BLEND_REGIONS)}")
    local = BLEND_REGIONS[country]
    return ["en"] if local == "en" else ["en", local]


def build_prompts(
    questions: pl.DataFrame,
    templates: Mapping[str, tuple[str, str]],
    country: str,
    language: str,
    prompt_id: str,
) -> pl.DataFrame:
    """One row per question: ID, country, language, prompt_id, question, prompt (filled template)."""
    country = normalize_region(country)
    if language not in run_languages(country):
        raise InputError(
            country, f"language {language!r} is not asked; expected one of {run_languages(country)}"
        )
    if prompt_id not in templates:
        raise InputError(
            country, f"prompt template {prompt_id!r} not found; have {', '.join(templates)}"
        )
    english, local = templates[prompt_id]
    native_english = BLEND_REGIONS[country] == "en"
    if language == "en":
        template, column = english, ("Question" if native_english else "Translation")
    else:
        template, column = local, "Question"
    if "{q}" not in template:
        which = "English" if language == "en" else "Translation"
        raise InputError(
            country,
            f"prompt template {prompt_id!r} ({which} column) has no {{q}} slot for the question",
        )
    texts = questions[column].to_list()
    return pl.DataFrame(
        {
            "ID": questions["ID"].to_list(),
            "country": [country] * len(texts),
            "language": [language] * len(texts),
            "prompt_id": [prompt_id] * len(texts),
            "question": texts,
            "prompt": [template.replace("{q}", q) for q in texts],
        },
        schema={
            k: pl.String for k in ("ID", "country", "language", "prompt_id", "question", "prompt")
        },
    )


def skip_reason(q: Question) -> str | None:
    """Why a question is left out of scoring (the BLEnD rules), or None when it is valid."""
    if q.no_answer + q.not_applicable >= SKIP_NO_ANSWER_NA:
        return "no_answer_or_not_applicable"
    if q.idk >= SKIP_IDK:
        return "idk"
    if not q.clusters:
        return "no_annotations"
    return None


RESPONSE_SCHEMA = {
    k: pl.String
    for k in ("ID", "country", "language", "prompt_id", "question", "prompt", "response")
}


def select_questions(questions: pl.DataFrame, max_questions: int | None) -> pl.DataFrame:
    """The first `max_questions` questions in file order (all when None)."""
    return questions if max_questions is None else questions.head(max_questions)


def country_prompts(
    data_dir: str | Path,
    country: str,
    runs: Sequence[tuple[str, str]],
    max_questions: int | None = None,
) -> pl.DataFrame:
    """Every prompt of one country's runs ((language, prompt template id) pairs, in order) over
    its first `max_questions` questions, read from the BLEnD data directory."""
    questions = select_questions(load_questions(questions_path(data_dir, country)), max_questions)
    templates = load_prompt_templates(prompts_path(data_dir, country))
    return pl.concat(
        [build_prompts(questions, templates, country, lang, prompt) for lang, prompt in runs]
    )


def generate_answers(
    generator: Any, texts: Sequence[str], sampling: Any, prompt_format: str = "chat"
) -> list[str]:
    """One answer per prompt text, in order: each as the one user turn of a conversation
    rendered by the model's chat template (`chat`), or as plain text without it (`raw`), the two
    ways BLEnD's code sends its prompts (chat models / base models and raw completion)."""
    return single_turn_answers(
        generator, texts, sampling, prompt_format, "evaluate.blend.prompt_format"
    )


def answer_drops(answers: Sequence[str], group: str) -> DropCounter:
    """Drop counts of one group's answers: empty answers are counted as 'empty_response' (they
    are kept, since the benchmark scores them as wrong)."""
    drops = DropCounter(stage="blend_generate", group=group)
    drops.seen(len(answers))
    empty = sum(1 for a in answers if not clean_response(a, ""))
    if empty:
        drops.drop("empty_response", empty)
    return drops


def answer_table(
    prompts: pl.DataFrame, answers: Sequence[str], group: str = "all"
) -> tuple[pl.DataFrame, DropCounter]:
    """The prompt table with a `response` column (RESPONSE_SCHEMA), and its drop counts."""
    if len(answers) != prompts.height:
        raise RuntimeError(f"{len(answers)} answers for {prompts.height} prompts")
    table = prompts.with_columns(response=pl.Series(list(answers), dtype=pl.String))
    return table.select(list(RESPONSE_SCHEMA)).cast(RESPONSE_SCHEMA), answer_drops(answers, group)


def answer_prompts(
    generator: Any,
    prompts: pl.DataFrame,
    sampling: Any,
    *,
    group: str = "all",
    prompt_format: str = "chat",
) -> tuple[pl.DataFrame, DropCounter]:
    """Ask the model every prompt, one answer per prompt (generate_answers); the prompt table
    with a `response` column and the drop counts (answer_table)."""
    answers = generate_answers(generator, prompts["prompt"].to_list(), sampling, prompt_format)
    return answer_table(prompts, answers, group)
