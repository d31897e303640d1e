"""One engine's BLEnD job: a base model and every adapter of it that the config evaluates, each
answering every country's prompts (every language × template), in one loaded engine.

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
from dataclasses import dataclass
from typing import Any

import polars as pl

from polyculture.backends.answer_cache import (
    AnswerCache,
    CacheStats,
    EngineCall,
    item_keys,
    run_calls,
)
from polyculture.backends.open import engine_identities, engine_plans, lazy_engine
from polyculture.blend.prompts import RESPONSE_SCHEMA, answer_drops, generate_answers
from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.languages import normalize_region

#: Every answer of one engine's job: the eval model's name, then a response table's columns.
ENGINE_SCHEMA = {"model": pl.String, **RESPONSE_SCHEMA}


@dataclass(frozen=True)
class EngineMember:
    """An eval model an engine serves: its name, whether it answers through an adapter (the
    engine serves the adapter under the eval model's name) and its cache identity
    (polyculture.backends.answer_cache.model_identity)."""

    name: str
    adapter: bool
    identity: Mapping[str, Any]


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
    cells = [(m, country, table) for m in members for country, table in prompts.items()]
    calls = [
        EngineCall(
            m.name if m.adapter else None,
            item_keys(m.identity, table["prompt"].to_list(), 1, sampling, prompt_format),
            lambda g, t=table: generate_answers(g, t["prompt"].to_list(), sampling, prompt_format),
        )
        for m, _, table in cells
    ]
    answers, stats = run_calls(open_engine, calls, cache)
    tables = [
        table.with_columns(
            model=pl.lit(m.name, pl.String), response=pl.Series(a, dtype=pl.String)
        ).select(list(ENGINE_SCHEMA))
        for (m, _, table), a in zip(cells, answers, strict=True)
    ]
    empty = pl.DataFrame(schema=ENGINE_SCHEMA)
    return pl.concat([empty, *tables]).cast(ENGINE_SCHEMA), stats


def in_config_order(
    tables: Sequence[pl.DataFrame], members: Sequence[Mapping[str, Any]]
) -> pl.DataFrame:
    """The answer tables of a job's engines as one (ENGINE_SCHEMA), eval models in config order
    (`members`: {name, ...}), each model's rows in their order."""
    order = {str(m["name"]): i for i, m in enumerate(members)}
    table = pl.concat([pl.DataFrame(schema=ENGINE_SCHEMA), *tables]).cast(ENGINE_SCHEMA)
    rank = table["model"].replace_strict(order, return_dtype=pl.Int64)
    return table.with_columns(_rank=rank).sort("_rank", maintain_order=True).drop("_rank")


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
    merge_adapter}) sharing the base `model` (spec `spec`), over every country's prompts, from
    the engines polyculture.backends.open.engine_plans gives them (one where the adapters are
    LoRA weights alone), each loaded only where a call is not cached and closed after."""
    identity = engine_identities(spec, model, members, backend)
    tables = []
    for plan in engine_plans(model, members, backend):
        served = plan.kwargs.get("adapters", {})
        group = [EngineMember(n, plan.switches and n in served, identity[n]) for n in plan.members]
        with lazy_engine(plan.path, plan.kwargs) as open_engine:
            tables.append(
                engine_answers(open_engine, group, prompts, sampling, prompt_format, cache)[0]
            )
    return in_config_order(tables, members)


def member_answers(
    table: pl.DataFrame, model: str, country: str
) -> tuple[pl.DataFrame, DropCounter]:
    """One eval model's answers to one country (RESPONSE_SCHEMA, in the engine table's order)
    and their drop counts, from an engine's answer table; fails where the model has none."""
    if model not in set(table["model"].to_list()):
        raise InputError(model, "no answers of this eval model in the engine's answer table")
    rows = table.filter(
        (pl.col("model") == model) & (pl.col("country") == normalize_region(country))
    )
    rows = rows.select(list(RESPONSE_SCHEMA)).cast(RESPONSE_SCHEMA)
    return rows, answer_drops(rows["response"].to_list(), f"{model}/{country}")
