"""blend: BLEnD short answers (Myung et al. 2024), SEM-B / SEM-W per country, through the scorer
of :mod:`polyculture.blend` (prompts, cleaning, lemmas and the scoring rules live there; this
folder maps them onto the benchmark interface). See README.md in this folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.blend import (
    PER_QUESTION_SCHEMA,
    annotations_path,
    country_prompts,
    load_annotations,
    load_prompt_templates,
    prepare_responses,
    prompts_path,
    questions_path,
    run_languages,
    score_responses,
    summarize,
)
from polyculture.errors import ConfigError, InputError

KEY = "evaluate.benchmarks[blend]"

#: The item table: the shared columns, then the BLEnD keys of the prompt.
ITEM_COLUMNS = ("item_id", "group", "prompt", "ID", "country", "language", "prompt_id", "question")

#: evaluate.blend key → the benchmark.yaml key it sets (the workflow's BLEnD rules read their
#: settings from the config's evaluate.blend section).
CONFIG_KEYS = {
    "data_path": ("data", "path"),
    "hub_dataset": ("data", "hub_dataset"),
    "hub_revision": ("data", "hub_revision"),
    "max_questions": ("data", "max_questions"),
    "countries": ("groups", "values"),
    "prompts": ("prompts", "templates"),
    "prompt_format": ("generation", "prompt_format"),
    "sampling": ("generation", "sampling"),
    "seed_offset": ("generation", "seed_offset"),
    "max_drop_rate": ("generation", "max_drop_rate"),
    "scorer_rules": ("scoring", "rules"),
}


def overrides_from_config(
    blend: Mapping[str, Any], data_dir: str | Path | None = None
) -> dict[str, Any]:
    """The benchmark.yaml overrides that a config's evaluate.blend section sets (CONFIG_KEYS);
    `data_dir` (where the workflow's rules read the data: data_path or the downloaded release)
    sets data.path."""
    out: dict[str, Any] = {}
    for key, (section, name) in CONFIG_KEYS.items():
        if key in blend:
            out.setdefault(section, {})[name] = blend[key]
    if data_dir is not None:
        out.setdefault("data", {})["path"] = str(data_dir)
    return out


#: An item's id: one question of one run, country/language/prompt_id/ID (question IDs repeat
#: across countries).
ITEM_ID = pl.concat_str(["country", "language", "prompt_id", "ID"], separator="/")


def runs(country: str, templates: list[str]) -> list[tuple[str, str]]:
    """(language, template) pairs a country is asked: every run language × every template."""
    return [(lang, t) for lang in run_languages(country) for t in templates]


class Blend:
    """BLEnD short answers: one item per country × language × template × question."""

    def check(self, settings: Mapping[str, Any]) -> None:
        path = settings["data"].get("path")
        if not path:
            raise ConfigError(f"{KEY}.data.path", "no BLEnD data directory is set")
        templates = list(settings["prompts"]["templates"])
        for country in settings["groups"]["values"]:
            for file in (
                questions_path(path, country),
                annotations_path(path, country),
                prompts_path(path, country),
            ):
                if not file.is_file():
                    raise ConfigError(
                        f"{KEY}.groups.values",
                        f"{country}: {file} does not exist (the BLEnD layout under data.path = {path})",
                    )
            missing = set(templates) - set(load_prompt_templates(prompts_path(path, country)))
            if missing:
                raise ConfigError(
                    f"{KEY}.prompts.templates",
                    f"template(s) {', '.join(sorted(missing))} not in {prompts_path(path, country)}",
                )

    def inputs(self, settings: Mapping[str, Any]) -> list[Path]:
        """Each country's questions, annotations and prompt templates."""
        path = settings["data"]["path"]
        return [
            f(path, c)
            for c in settings["groups"]["values"]
            for f in (questions_path, annotations_path, prompts_path)
        ]

    def items(self, settings: Mapping[str, Any]) -> pl.DataFrame:
        """Every prompt: country by country (configured order), its runs (language, then
        template), its first data.max_questions questions in file order (the engine's order)."""
        data, templates = settings["data"], list(settings["prompts"]["templates"])
        frames = [
            country_prompts(data["path"], c, runs(c, templates), data.get("max_questions"))
            for c in settings["groups"]["values"]
        ]
        table = pl.concat(frames)
        return table.with_columns(item_id=ITEM_ID, group=pl.col("country")).select(ITEM_COLUMNS)

    def score(
        self, items: pl.DataFrame, responses: pl.DataFrame, settings: Mapping[str, Any]
    ) -> pl.DataFrame:
        """The per-question table of polyculture.blend.score_responses (PER_QUESTION_SCHEMA,
        its row order: runs sorted, questions in annotation order) against the annotations of
        the items' questions, with item_id, group (the country), dropped (no response, or
        empty after cleaning) and the metrics (null where BLEnD skips the question)."""
        answers = dict(
            zip(responses["item_id"].to_list(), responses["response"].to_list(), strict=True)
        )
        table = items.select("ID", "country", "language", "prompt_id", "prompt").with_columns(
            response=pl.Series(
                [answers.get(i) for i in items["item_id"].to_list()], dtype=pl.String
            )
        )
        data_dir = settings["data"]["path"]
        annotations = {}
        for country in items["country"].unique(maintain_order=True).to_list():
            asked = set(items.filter(pl.col("country") == country)["ID"].to_list())
            ann = load_annotations(annotations_path(data_dir, country))
            annotations[country] = {qid: q for qid, q in ann.items() if qid in asked}
        _, per_question = score_responses(
            table,
            data_dir,
            source="blend items",
            annotations=annotations,
            rules=settings["scoring"]["rules"],
        )
        return per_question.with_columns(
            item_id=ITEM_ID,
            group=pl.col("country"),
            dropped=~pl.col("answered"),
            sem_b=pl.col("match").cast(pl.Float64),
            sem_w=pl.col("weight"),
        )

    def responses_from(self, table: pl.DataFrame, source: object) -> pl.DataFrame:
        """item_id and response of a table in the blend-score form (ID, country, language,
        prompt_id, response; country and language as polyculture.blend.prepare_responses
        reads them): e.g. the workflow's results/evaluate/blend/<model>/answers/*.parquet."""
        if "prompt_id" not in table.columns:
            raise InputError(
                source,
                "no item_id column and no prompt_id column: the blend benchmark's items are "
                "per prompt template (item_id = country/language/prompt_id/ID)",
            )
        prepared = prepare_responses(table, source)
        return prepared.select(item_id=ITEM_ID, response=pl.col("response"))


def workflow_responses(items: pl.DataFrame, answers: pl.DataFrame, source: object) -> pl.DataFrame:
    """item_id and response of the workflow's answer tables (blend_answers: ID, country,
    language, prompt_id, prompt, response), each answer's prompt checked against its item's (a
    difference means the data changed after the answers were generated)."""
    table = answers.select(
        item_id=ITEM_ID, answered_prompt=pl.col("prompt"), response=pl.col("response")
    )
    joined = table.join(items.select("item_id", "prompt"), on="item_id", how="left")
    unknown = joined.filter(pl.col("prompt").is_null())
    if unknown.height:
        raise InputError(
            source, f"answer to {unknown['item_id'][0]!r}, not an item of the blend settings"
        )
    changed = joined.filter(pl.col("prompt") != pl.col("answered_prompt"))
    if changed.height:
        raise InputError(
            source,
            f"{changed.height} answer(s) were asked another prompt than their item's, e.g. "
            f"{changed['item_id'][0]!r}: {changed['answered_prompt'][0]!r} (the data changed?)",
        )
    return table.select("item_id", "response")


def per_question_table(scores: pl.DataFrame) -> pl.DataFrame:
    """The workflow's per-question table (results/evaluate/blend/<model>/per_question.parquet:
    PER_QUESTION_SCHEMA) of a per-item score table, keeping a leading model column."""
    cols = (["model"] if "model" in scores.columns else []) + list(PER_QUESTION_SCHEMA)
    return scores.select(cols)


def run_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """SEM-B / SEM-W per country × language × template (polyculture.blend.summarize) of a
    per-item score table, keeping a leading model column."""
    if "model" not in scores.columns:
        return summarize(scores)
    model = scores["model"].unique().to_list()
    if len(model) != 1:
        raise InputError("blend scores", f"expected one model's scores, got {model}")
    return summarize(scores).select(pl.lit(model[0]).alias("model"), pl.all())


BENCHMARK = Blend()
