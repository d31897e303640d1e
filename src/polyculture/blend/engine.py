"""One engine's BLEnD job: a base model and every adapter of it that the config evaluates, each
answering every country's prompts (every language × template), in one loaded engine
(polyculture.backends.engine_job).

Calls. Each (eval model, country) is one generator call, as when each had a job of its own, so
the hf backend's batches (length-sorted within a call) and the prompts' seeds are unchanged and
the answers are those of per-country jobs. Calls go through the answer cache
(polyculture.backends.answer_cache): a call whose answers are all cached is not run, and where
none is missing the engine is not even loaded.

Output. One table of every answer with a `model` column (ENGINE_SCHEMA); :func:`member_answers`
takes one (eval model, country)'s rows back out, as the per-country tables of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from polyculture.backends import engine_job
from polyculture.backends.answer_cache import AnswerCache, CacheStats
from polyculture.backends.engine_job import AnswerSettings, EngineMember, member_rows
from polyculture.blend.prompts import RESPONSE_SCHEMA, answer_drops
from polyculture.drops import DropCounter
from polyculture.languages import normalize_region

__all__ = ["ENGINE_SCHEMA", "EngineMember", "engine_answers", "job_answers", "member_answers"]

#: Every answer of one engine's job: the eval model's name, then a response table's columns.
ENGINE_SCHEMA = {"model": pl.String, **RESPONSE_SCHEMA}


def _how(sampling: Any, prompt_format: str) -> AnswerSettings:
    return AnswerSettings(sampling, prompt_format, "evaluate.blend.prompt_format", ENGINE_SCHEMA)


def engine_answers(
    open_engine: Callable[[], Any],
    members: Sequence[EngineMember],
    prompts: Mapping[str, pl.DataFrame],
    sampling: Any,
    prompt_format: str,
    cache: AnswerCache | None,
) -> tuple[pl.DataFrame, CacheStats]:
    """Every member's answers to every country's prompts (`prompts`: country → prompt table,
    in order), one call per (member, country) through the cache; `open_engine()` loads the
    generator on the first call that is not cached (the caller closes it). Returns the answer
    table (ENGINE_SCHEMA) and the cache counts."""
    return engine_job.engine_answers(
        open_engine, members, prompts, _how(sampling, prompt_format), cache
    )


def job_answers(
    spec: str,
    model: str,
    members: Sequence[Mapping[str, Any]],
    backend: Mapping[str, Any],
    prompts: Mapping[str, pl.DataFrame],
    sampling: Any,
    prompt_format: str,
    cache: AnswerCache | None,
) -> pl.DataFrame:
    """Every answer of one blend_generate job: eval models `members` ({name, adapter,
    merge_adapter}) sharing the base `model` (spec `spec`), over every country's prompts
    (polyculture.backends.engine_job.job_answers), in config order."""
    job = engine_job.EngineJob(spec, model, members, backend)
    return engine_job.job_answers(job, prompts, _how(sampling, prompt_format), cache)


def member_answers(
    table: pl.DataFrame, model: str, country: str
) -> tuple[pl.DataFrame, DropCounter]:
    """One eval model's answers to one country (RESPONSE_SCHEMA, in the engine table's order)
    and their drop counts, from an engine's answer table; fails where the model has none."""
    rows = member_rows(table, model, RESPONSE_SCHEMA)
    rows = rows.filter(pl.col("country") == normalize_region(country))
    return rows, answer_drops(rows["response"].to_list(), f"{model}/{country}")
