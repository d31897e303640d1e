"""Hypothetical-survey prompts: building, translating and sending them (stages 2-4).

- :func:`prompt_grid` crosses every template with every topic variant of the chosen topics
  (the paper's 10 templates × 5 variants × topics).
- :func:`sample_prompts` draws a seeded sample of ``n_prompts`` from the grid, balanced over
  topics (every topic gets ⌊n/T⌋ or ⌈n/T⌉ prompts; which topics get the extra one is seeded;
  within a topic, distinct template × variant pairs are drawn without replacement). The same
  English sample serves every language, so languages differ only by translation.
- :func:`check_no_country` fails when a prompt names a country of the country map (the
  prompt's language is the only cue to culture).
- :func:`translate_prompts` translates the English prompts into one language (English stays as
  it is); empty translations and, when checked, translations identified as another language
  are dropped and counted.
- :func:`survey` samples responses of one model to one language's prompts; a survey job
  (one model, one shard of every language) is :func:`survey_units` (a unit per language, each
  with the seed a job per model × language × shard had), :func:`survey_request` (what a unit
  sends) and :func:`survey_table` (its rows), so that the job's script can send each unit
  through the answer cache (polyculture.backends.answer_cache) and a rerun after a kill
  generates only the units not yet answered.

Tables:

- ``{RESULTS}/wvs/prompts_en.parquet`` (rule ``wvs_build_prompts``): prompt_id, question_key,
  template_id, topic_variant_id, topic_text, prompt_en.
- ``{RESULTS}/wvs/prompts/{language}.parquet`` (rule ``wvs_translate_prompts``): the same
  plus language and prompt (the text sent to the model); drops in
  ``{RESULTS}/wvs/drops/translate/{language}.parquet``.
- ``{RESULTS}/wvs/responses/{model}/{language}/shard{shard}.parquet`` (rule ``wvs_survey``):
  model, family, language, prompt_id, template_id, topic_variant_id, question_key,
  response_id ("{model}/{language}/{prompt_id}/{sample}"), sample, prompt, response.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, InputError
from polyculture.io import shard_bounds
from polyculture.wvs.surveys import RESPONSE_KEY_SCHEMA, LanguageIdentifier
from polyculture.wvs.topics import Template, Topic

PROMPT_SCHEMA = {
    "prompt_id": pl.String,
    "question_key": pl.String,
    "template_id": pl.String,
    "topic_variant_id": pl.String,
    "topic_text": pl.String,
    "prompt_en": pl.String,
}
RESPONSE_SCHEMA = {**RESPONSE_KEY_SCHEMA, "prompt": pl.String, "response": pl.String}


def stage_seed(base: int, *parts: object) -> int:
    """A 31-bit seed for one job of a stage: `base` mixed with the job's wildcards (stable)."""
    words = [int(base), *(zlib.crc32(str(p).encode("utf-8")) for p in parts)]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0] >> 1)


def variant_id(key: str, index: int) -> str:
    """Identifier of a topic's variant (1-based): 'f118:v3'."""
    return f"{key}:v{index}"


def prompt_grid(topics: Sequence[Topic], templates: Sequence[Template]) -> pl.DataFrame:
    """Every template × topic variant of the topics (columns of PROMPT_SCHEMA but prompt_id)."""
    rows = [
        {
            "question_key": t.key,
            "template_id": tpl.id,
            "topic_variant_id": variant_id(t.key, i),
            "topic_text": variant,
            "prompt_en": tpl.fill(variant),
        }
        for t in topics
        for i, variant in enumerate(t.variants, start=1)
        for tpl in templates
    ]
    return pl.DataFrame(rows, schema={k: v for k, v in PROMPT_SCHEMA.items() if k != "prompt_id"})


def sample_prompts(grid: pl.DataFrame, n_prompts: int, seed: int) -> pl.DataFrame:
    """A seeded sample of `n_prompts` grid rows balanced over topics, with prompt ids p0001...

    Rows come out in draw order (topics interleaved), so any prefix is itself near-balanced.
    """
    keys = list(dict.fromkeys(grid["question_key"].to_list()))
    if n_prompts < len(keys):
        raise ConfigError(
            "wvs.n_prompts",
            f"{n_prompts} prompts cannot cover the {len(keys)} topics; ask for at least {len(keys)}",
        )
    rng = np.random.default_rng(seed)
    base, extra = divmod(n_prompts, len(keys))
    lucky = set(rng.permutation(len(keys))[:extra].tolist())
    picks: list[list[int]] = []
    for j, key in enumerate(keys):
        rows = np.flatnonzero((grid["question_key"] == key).to_numpy())
        k = base + (1 if j in lucky else 0)
        if k > len(rows):
            raise ConfigError(
                "wvs.n_prompts",
                f"topic {key} has only {len(rows)} template × variant prompts, {k} requested",
            )
        picks.append(rows[rng.permutation(len(rows))[:k]].tolist())
    order = [p[r] for r in range(max(len(p) for p in picks)) for p in picks if r < len(p)]
    sample = grid[order]
    ids = [f"p{i:04d}" for i in range(1, sample.height + 1)]
    return sample.with_columns(pl.Series("prompt_id", ids)).select(list(PROMPT_SCHEMA))


def check_no_country(
    prompts: pl.DataFrame, names: Sequence[str], column: str = "prompt_en"
) -> None:
    """Fail naming the prompt when a prompt names a country (whole words, any case)."""
    names = [n for n in names if n]
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)
    for row in prompts.iter_rows(named=True):
        m = pattern.search(row[column])
        if m:
            raise InputError(
                "prompts",
                f"prompt {row.get('prompt_id', '?')} ({row['question_key']}, {row['template_id']}) "
                f"names the country '{m.group(0)}'; prompts must not name a country",
            )
        if "[" in row[column] or "{" in row[column]:
            raise InputError("prompts", f"prompt {row.get('prompt_id', '?')} holds a placeholder")


def build_prompts(
    topics: Sequence[Topic],
    templates: Sequence[Template],
    n_prompts: int,
    seed: int,
    country_names: Sequence[str] = (),
) -> pl.DataFrame:
    """The English prompt sample of stage 2 (see the module docstring)."""
    grid = prompt_grid(topics, templates)
    check_no_country(grid, country_names)
    return sample_prompts(grid, n_prompts, seed)


class Translator(Protocol):
    """What :mod:`polyculture.backends.translation` translators offer."""

    def supports(self, lang: str) -> bool: ...

    def translate(
        self, texts: Sequence[str], source: str | Sequence[str], target: str | Sequence[str]
    ) -> list[str]: ...


def translate_prompts(
    prompts: pl.DataFrame,
    language: str,
    translator: Translator | None,
    *,
    identifier: LanguageIdentifier | None = None,
) -> tuple[pl.DataFrame, DropCounter]:
    """One language's prompts: English as is, other languages through `translator`.

    Drops (reasons ``empty_translation``, ``translation_wrong_language``) are counted; with an
    `identifier`, a translation must be identified as `language`.
    """
    counter = DropCounter("translate", language)
    counter.seen(prompts.height)
    if language == "en":
        out = prompts.with_columns(
            pl.lit("en").alias("language"), pl.col("prompt_en").alias("prompt")
        )
        return out, counter
    if translator is None:
        raise ConfigError("translator", f"prompts in '{language}' need a translator")
    if not translator.supports(language):
        raise ConfigError("translator", f"the configured translator does not support '{language}'")
    texts = translator.translate(prompts["prompt_en"].to_list(), "en", language)
    if len(texts) != prompts.height:
        raise RuntimeError(f"translator returned {len(texts)} texts for {prompts.height} prompts")
    cleaned = [" ".join((t or "").split()) for t in texts]
    keep = [bool(t) for t in cleaned]
    for ok in keep:
        if not ok:
            counter.drop("empty_translation")
    if identifier is not None:
        found = identifier.identify_many([t for t in cleaned if t])
        it = iter(found)
        for i, ok in enumerate(keep):
            if ok and next(it) != language:
                keep[i] = False
                counter.drop("translation_wrong_language")
    out = prompts.with_columns(pl.lit(language).alias("language"), pl.Series("prompt", cleaned))
    return out.filter(pl.Series(keep)), counter


def language_prompts(prompts: pl.DataFrame, language: str, source: object) -> pl.DataFrame:
    """The prompts of one language; fails naming the file when the language has none."""
    needed = {"prompt_id", "language", "question_key", "template_id", "topic_variant_id", "prompt"}
    missing = sorted(needed - set(prompts.columns))
    if missing:
        raise InputError(source, f"missing column(s) {', '.join(missing)}")
    sub = prompts.filter(pl.col("language") == language)
    if sub.height == 0:
        raise InputError(
            source,
            f"no prompts in language '{language}' (every translation was dropped, or the "
            "language was never translated); see the translate drops table",
        )
    return sub


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any of `stops`.

    The released generation stopped at ``"11."`` (vLLM ``stop="11."``,
    scripts/vllm_batch_responses.py): the survey asks for 10 interviews, and an 11th item is
    cut off. A stop string ends decoding at the first point where the decoded text contains it
    and drops it from the output; sampled tokens before that point do not depend on the stop,
    so cutting the full text here gives the same response text. :func:`survey` passes the stops
    to the backend too (no tokens spent past them) and keeps this cut as the guard."""
    cut = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def survey_request(
    prompts: pl.DataFrame, sampling: Any, stop: Sequence[str] = ()
) -> tuple[list[list[dict[str, str]]], Any]:
    """The conversations a survey sends for `prompts` (one user turn each) and its sampling:
    the `stop` strings (wvs.stop) joined to the sampling's own (wvs.sampling.stop), so that
    every backend ends a response there."""
    stops = tuple(dict.fromkeys([*sampling.stop, *stop]))
    conversations = [[{"role": "user", "content": p}] for p in prompts["prompt"].to_list()]
    return conversations, dataclasses.replace(sampling, stop=stops)


def survey_table(
    prompts: pl.DataFrame,
    replies: Sequence[Sequence[str]],
    *,
    model: str,
    family: str,
    language: str,
    stop: Sequence[str],
) -> pl.DataFrame:
    """One row per reply of `replies` (per prompt of `prompts`, its samples), each text cut
    before the first of the `stop` strings (:func:`cut_at_stops`) as a guard, which changes
    nothing where the backend stopped there."""
    rows: list[dict[str, object]] = []
    for row, samples in zip(prompts.iter_rows(named=True), replies, strict=True):
        for s, text in enumerate(samples):
            rows.append(
                {
                    "model": model,
                    "family": family,
                    "language": language,
                    "prompt_id": row["prompt_id"],
                    "template_id": row["template_id"],
                    "topic_variant_id": row["topic_variant_id"],
                    "question_key": row["question_key"],
                    "response_id": f"{model}/{language}/{row['prompt_id']}/{s}",
                    "sample": s,
                    "prompt": row["prompt"],
                    "response": cut_at_stops(text, stop),
                }
            )
    return pl.DataFrame(rows, schema=RESPONSE_SCHEMA)


def survey(
    generator: Any,
    prompts: pl.DataFrame,
    *,
    model: str,
    family: str,
    language: str,
    n_samples: int,
    sampling: Any,
    stop: Sequence[str] = (),
) -> pl.DataFrame:
    """`n_samples` responses of `generator` to each prompt, one row per response
    (:func:`survey_request`, then :func:`survey_table`)."""
    conversations, sampling = survey_request(prompts, sampling, stop)
    replies = generator.generate(conversations, n_samples, sampling) if conversations else []
    return survey_table(
        prompts, replies, model=model, family=family, language=language, stop=sampling.stop
    )


@dataclasses.dataclass(frozen=True)
class SurveyUnit:
    """One language's part of a survey job: the language, the shard's prompts and its seed."""

    language: str
    shard: int
    prompts: pl.DataFrame
    seed: int
    start: int


def survey_units(
    tables: Sequence[tuple[str, pl.DataFrame, object]],
    shard: int,
    n_shards: int,
    base_seed: int,
    model: str,
) -> list[SurveyUnit]:
    """The units of survey job (`model`, `shard`): per (language, prompt table, its source)
    of `tables`, that language's prompts (:func:`language_prompts`), cut to shard `shard` of
    `n_shards` (polyculture.io.shard_bounds), with the seed a job of that model × language ×
    shard alone had (stage_seed(base_seed, model, language, shard)), so the responses are
    those of per-language jobs."""
    units = []
    for language, table, source in tables:
        prompts = language_prompts(table, language, source)
        start, stop = shard_bounds(prompts.height, shard, n_shards)
        seed = stage_seed(base_seed, model, language, str(shard))
        units.append(SurveyUnit(language, shard, prompts.slice(start, stop - start), seed, start))
    return units
