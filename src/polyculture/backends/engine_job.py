"""One engine job (issue 26): the eval models that share a base model, the base and its unmerged
adapters (polyculture.backends.engine.engine_groups), answer prompt tables in the engines
polyculture.backends.open.engine_plans gives them (one where the adapters are LoRA weights
alone, switched by name), through the answer cache. BLEnD's short answers
(polyculture.blend.engine) and the folder benchmarks (polyculture.evals.tables) both run on it.

Calls. Each (eval model, prompt table) is one generator call, as when each eval model had a job
of its own, so the hf backend's batches (length-sorted within a call) and the prompts' seeds are
those of separate jobs and so are the answers. Calls go through the answer cache
(polyculture.backends.answer_cache): a call whose answers are all cached is not run, and where
none is missing the engine is not even loaded.

Output. One table of every answer: the eval model's name (`model`), then the prompt table's
columns and `response` (the caller's schema); :func:`member_rows` takes one eval model's rows
back out.
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
from polyculture.errors import ConfigError, InputError

#: How a prompt text is sent: as the one user turn of a conversation rendered by the model's
#: chat template (`chat`), or as plain text without it (`raw`).
PROMPT_FORMATS = ("chat", "raw")


def single_turn_answers(
    generator: Any,
    texts: Sequence[str],
    sampling: Any,
    prompt_format: str = "chat",
    key: str = "prompt_format",
) -> list[str]:
    """One answer per prompt text, in order, each sent as `prompt_format` says (PROMPT_FORMATS;
    `key` names the config key in the error for another value); an empty output is ''."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(key, f"'{prompt_format}' is not one of {', '.join(PROMPT_FORMATS)}")
    texts = list(texts)
    if not texts:
        outputs = []
    elif prompt_format == "raw":
        outputs = generator.generate_raw(texts, n=1, sampling=sampling)
    else:
        conversations = [[{"role": "user", "content": p}] for p in texts]
        outputs = generator.generate(conversations, n=1, sampling=sampling)
    if len(outputs) != len(texts):
        raise RuntimeError(f"generator returned {len(outputs)} outputs for {len(texts)} prompts")
    return [out[0] if out else "" for out in outputs]


@dataclass(frozen=True)
class EngineMember:
    """An eval model an engine serves: its name, whether it answers through an adapter (the
    engine serves the adapter under the eval model's name) and its cache identity
    (polyculture.backends.answer_cache.model_identity)."""

    name: str
    adapter: bool
    identity: Mapping[str, Any]


@dataclass(frozen=True)
class AnswerSettings:
    """How a job asks: the sampling settings, the prompt format (PROMPT_FORMATS), the config key
    that sets it (named in errors) and the answer table's schema (`model`, the prompt table's
    columns kept, `response`)."""

    sampling: Any
    prompt_format: str
    format_key: str
    schema: Mapping[str, Any]


def engine_answers(
    open_engine: Callable[[], Any],
    members: Sequence[EngineMember],
    prompts: Mapping[str, pl.DataFrame],
    how: AnswerSettings,
    cache: AnswerCache | None,
) -> tuple[pl.DataFrame, CacheStats]:
    """Every member's answers to every prompt table (`prompts`: name → table with a `prompt`
    column, in order), one call per (member, table) through the cache; `open_engine()` loads
    the generator on the first call that is not cached (the caller closes it). Returns the
    answer table (`how.schema`) and the cache counts."""
    cells = [(m, table) for m in members for table in prompts.values()]
    calls = [
        EngineCall(
            m.name if m.adapter else None,
            item_keys(m.identity, table["prompt"].to_list(), 1, how.sampling, how.prompt_format),
            lambda g, t=table: single_turn_answers(
                g, t["prompt"].to_list(), how.sampling, how.prompt_format, how.format_key
            ),
        )
        for m, table in cells
    ]
    answers, stats = run_calls(open_engine, calls, cache)
    tables = [
        table.with_columns(
            model=pl.lit(m.name, pl.String), response=pl.Series(a, dtype=pl.String)
        ).select(list(how.schema))
        for (m, table), a in zip(cells, answers, strict=True)
    ]
    return _concat(tables, how.schema), stats


def _concat(tables: Sequence[pl.DataFrame], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.concat([pl.DataFrame(schema=dict(schema)), *tables]).cast(dict(schema))


def in_config_order(
    tables: Sequence[pl.DataFrame],
    members: Sequence[Mapping[str, Any]],
    schema: Mapping[str, Any],
) -> pl.DataFrame:
    """The answer tables of a job's engines as one (`schema`), eval models in config order
    (`members`: {name, ...}), each model's rows in their order."""
    order = {str(m["name"]): i for i, m in enumerate(members)}
    table = _concat(tables, schema)
    rank = table["model"].replace_strict(order, return_dtype=pl.Int64)
    return table.with_columns(_rank=rank).sort("_rank", maintain_order=True).drop("_rank")


@dataclass(frozen=True)
class EngineJob:
    """The models of one engine job, as the rules pass them: the base model's spec and its
    loadable path or hub id (`model`), the eval models it serves (`members`: {name, adapter,
    merge_adapter}, as eval_model_params gives them, in config order) and the backend settings
    (generation_params)."""

    spec: str
    model: str
    members: Sequence[Mapping[str, Any]]
    backend: Mapping[str, Any]


def job_answers(
    job: EngineJob,
    prompts: Mapping[str, pl.DataFrame],
    how: AnswerSettings,
    cache: AnswerCache | None,
) -> pl.DataFrame:
    """Every answer of one engine job: each of its eval models over every prompt table, from the
    engines engine_plans gives them, each loaded only where a call is not cached and closed
    after; in config order."""
    # here, not at the top: the workflow imports this module's prompt helpers, and the
    # generation backends are needed only by a job that generates
    from polyculture.backends.open import engine_identities, engine_plans, lazy_engine

    identity = engine_identities(job.spec, job.model, job.members, job.backend)
    tables = []
    for plan in engine_plans(job.model, job.members, job.backend):
        served = plan.kwargs.get("adapters", {})
        group = [EngineMember(n, plan.switches and n in served, identity[n]) for n in plan.members]
        with lazy_engine(plan.path, plan.kwargs) as open_engine:
            tables.append(engine_answers(open_engine, group, prompts, how, cache)[0])
    return in_config_order(tables, job.members, how.schema)


def member_rows(table: pl.DataFrame, model: str, schema: Mapping[str, Any]) -> pl.DataFrame:
    """One eval model's rows of an engine job's answer table (columns `schema`, in the table's
    order); fails where the model has none."""
    if model not in set(table["model"].to_list()):
        raise InputError(model, "no answers of this eval model in the engine's answer table")
    return table.filter(pl.col("model") == model).select(list(schema)).cast(dict(schema))
