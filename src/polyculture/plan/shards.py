"""Shard counts that follow the work: `wvs.shards`, `wvs.judge_shards` and `consensus.shards`
take `auto` besides a number. `auto` is one job per model and stage, split into
ceil(hours / `cluster.job_hours`) shards where the plan's estimate of that one job's hours
(engine start-up plus its tokens at the throughput of its model size and GPU kind,
polyculture.plan.bill.busy_hours) is longer than the target; at least one.

The workflow computes the counts when it is parsed, before anything runs, and again in every
cluster job's own parse: so the estimate reads the config and its input files alone, never an
earlier run's tables (Context.config_only: the English prompts, the sampling limits, the
consensus pairs estimated from its sources' files), and counts tokens by the character
approximation (polyculture.plan.tokens.CHARS_PER_TOKEN: the same on every host, no tokenizer to
load). A job that holds no GPU (an API model) and a run without a cluster site (no GPU kind, no
runtime limit: the local profile) keep one job; so does `cluster.job_hours: null` (no target)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyculture.backends.spec import parse_model_spec
from polyculture.errors import ConfigError
from polyculture.plan.dag import Job
from polyculture.plan.tokens import TokenCounter

#: Shard keys → (the stage's rule, its wildcard of the model).
SHARD_KEYS: Mapping[str, tuple[str, str]] = {
    "wvs.shards": ("wvs_survey", "model"),
    "wvs.judge_shards": ("wvs_judge", "model"),
    "consensus.shards": ("sample_responses", "model"),
}


def _section_key(key: str) -> tuple[str, str]:
    section, name = key.split(".")
    return section, name


def stage_spec(config: Mapping[str, Any], key: str, model: str) -> str:
    """The model spec a job of the stage of `key` runs (`model`: an eval model's name for the
    WVS survey and judge, the generator's spec for consensus sampling)."""
    from polyculture.plan.work import eval_model_spec

    if key == "wvs.shards":
        return eval_model_spec(config, model)
    if key == "wvs.judge_shards":
        return str(config["wvs"]["judge"])
    return str(config["consensus"]["generator"])


def stage_hours(
    config: Mapping[str, Any], workdir: Path, key: str, model: str, gpu_kind: str
) -> float:
    """Estimated hours of ONE job doing the whole stage of `key` for `model` on one engine of
    GPU kind `gpu_kind` (start-up once, then every token), from the config and its inputs."""
    from polyculture.plan.bill import busy_hours
    from polyculture.plan.work import Context, job_work

    section, name = _section_key(key)
    single = {**config, section: {**config[section], name: 1}}
    ctx = Context(single, workdir, TokenCounter(approximate=True), config_only=True)
    rule, wildcard = SHARD_KEYS[key]
    job = Job(rule, 0, {wildcard: model, "shard": "0"}, resources={"gpu": "1"})
    return busy_hours(job, job_work(job, ctx), gpu_kind, ctx)


def shard_count(
    config: Mapping[str, Any], workdir: Path, key: str, model: str, gpu_kind: str | None
) -> int:
    """The shards of `key` (a dotted key of SHARD_KEYS) for `model`: the config's number as it
    is; for `auto`, ceil(stage_hours / cluster.job_hours), at least 1, and 1 where the job
    holds no GPU (an API model), where there is no GPU kind (no cluster site) or no target."""
    section, name = _section_key(key)
    value = config[section][name]
    if value != "auto":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, f"expected a whole number >= 1 or 'auto', got {value!r}")
        return value
    target = (config.get("cluster") or {}).get("job_hours")
    if not target or not gpu_kind or parse_model_spec(stage_spec(config, key, model)).is_api:
        return 1
    hours = stage_hours(config, Path(workdir), key, model, gpu_kind)
    return max(1, math.ceil(hours / float(target)))
