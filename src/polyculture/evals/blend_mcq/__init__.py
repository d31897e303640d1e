"""blend-mcq: BLEnD's multiple-choice form (Myung et al. 2024, §4.2), built offline from the
short-answer annotations or read from a released file; scored by the generated
``{"answer_choice": ...}`` as the official evaluation does. See README.md in this folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.blend import annotations_path, fetch_blend, questions_path
from polyculture.errors import ConfigError
from polyculture.evals.blend_mcq.construction import (
    MC_COLUMNS,
    build_mc_questions,
    parse_choice,
    read_mc_questions,
)


class BlendMCQ:
    """The BLEnD multiple-choice benchmark (items: one prompt per MCQID; group: country)."""

    def check(self, settings: Mapping[str, Any]) -> None:
        data = settings["data"]
        countries = settings["groups"]["values"]
        if len(countries) < 2:
            raise ConfigError(
                "evaluate.benchmarks[blend-mcq].groups.values",
                "needs at least two countries (distractors come from the other countries)",
            )
        if data.get("mc_questions_file"):
            read_mc_questions(data["mc_questions_file"], countries)
            return
        if not data.get("path"):
            raise ConfigError(
                "evaluate.benchmarks[blend-mcq].data.path",
                "no BLEnD data directory (or data.mc_questions_file, or data.hub_dataset to "
                "download the release) is set",
            )
        for country in countries:
            for path in (
                questions_path(data["path"], country),
                annotations_path(data["path"], country),
            ):
                if not Path(path).is_file():
                    raise ConfigError(
                        "evaluate.benchmarks[blend-mcq].groups.values",
                        f"{country}: {path} does not exist (data.path = {data['path']})",
                    )

    def inputs(self, settings: Mapping[str, Any]) -> list[Path]:
        """The files the items are built from: the released file, or each country's questions
        and annotations."""
        data = settings["data"]
        if data.get("mc_questions_file"):
            return [Path(data["mc_questions_file"])]
        return [
            f(data["path"], c)
            for c in settings["groups"]["values"]
            for f in (questions_path, annotations_path)
        ]

    def fetch(self, settings: Mapping[str, Any], dest: Path) -> None:
        """Download the short-answer release (data.hub_dataset at data.hub_revision) into `dest`,
        the layout data.path names (BLEnD's own download: polyculture.blend.fetch_blend)."""
        data = settings["data"]
        fetch_blend(
            data["hub_dataset"],
            dest,
            revision=data.get("hub_revision") or "main",
            countries=settings["groups"]["values"],
        )

    def items(self, settings: Mapping[str, Any]) -> pl.DataFrame:
        data, build = settings["data"], settings["construction"]
        countries = [str(c) for c in settings["groups"]["values"]]
        if data.get("mc_questions_file"):
            mc = read_mc_questions(data["mc_questions_file"], countries)
        else:
            mc = build_mc_questions(
                data["path"],
                countries,
                settings["prompts"],
                min_votes=build["min_votes"],
                max_idk=build["max_idk"],
                max_distractors=build["max_distractors"],
                min_distractors=build["min_distractors"],
                max_questions=build.get("max_questions"),
            )
        return mc.select(
            pl.col("MCQID").alias("item_id"),
            pl.col("country").alias("group"),
            "prompt",
            *(c for c in MC_COLUMNS if c not in ("MCQID", "country", "prompt")),
        )

    def score(
        self, items: pl.DataFrame, responses: pl.DataFrame, settings: Mapping[str, Any]
    ) -> pl.DataFrame:
        answers = dict(
            zip(responses["item_id"].to_list(), responses["response"].to_list(), strict=True)
        )
        rows = []
        for r in items.iter_rows(named=True):
            reply = answers.get(r["item_id"])
            letter = (
                None
                if reply is None
                else parse_choice(reply, r["prompt"], json.loads(r["choices"]))
            )
            rows.append(
                {
                    "item_id": r["item_id"],
                    "group": r["group"],
                    "answer_idx": r["answer_idx"],
                    "final_ans": letter,
                    "dropped": letter is None,
                    "accuracy": float(letter == r["answer_idx"]),
                }
            )
        return pl.DataFrame(
            rows,
            schema={
                "item_id": pl.String,
                "group": pl.String,
                "answer_idx": pl.String,
                "final_ans": pl.String,
                "dropped": pl.Boolean,
                "accuracy": pl.Float64,
            },
        )


BENCHMARK = BlendMCQ()
