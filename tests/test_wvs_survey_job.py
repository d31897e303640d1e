"""One survey job per eval model and shard (issue 26): every language in one engine, each
language's answers those of a job of that model × language × shard alone, and each finished
language checkpointed in the answer cache, so a rerun after a kill answers only the rest.
With the real tiny model on the hf backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from polyculture.backends.answer_cache import AnswerCache, generate_calls, model_identity
from polyculture.backends.generation import Sampling, load_generator
from polyculture.wvs.prompts import survey, survey_request, survey_table, survey_units

LANGUAGES = ("en", "de", "fr")
STOP = ("11.",)


class Counted:
    """A real generator counting its calls and prompts; a call past `fail_after` stops the job
    as a kill would."""

    def __init__(self, generator: Any, fail_after: int | None = None) -> None:
        self.generator, self.fail_after = generator, fail_after
        self.adapters = generator.adapters
        self.calls = self.prompts = 0

    def generate(self, convs: Any, n: int, sampling: Sampling) -> list[list[str]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("job killed")
        self.calls += 1
        self.prompts += len(convs)
        return self.generator.generate(convs, n, sampling)


def prompt_table() -> pl.DataFrame:
    rows = [
        {
            "prompt_id": f"p{i}",
            "language": lang,
            "question_key": f"q{i % 2}",
            "template_id": f"t{i}",
            "topic_variant_id": f"q{i % 2}:v1",
            "prompt": f"[{lang}] Interview person {i} about topic {i % 2}.",
        }
        for lang in LANGUAGES
        for i in range(5)
    ]
    return pl.DataFrame(rows)


def job(generator: Any, identity: dict, cache: AnswerCache | None, shard: int = 1):
    """The survey job (tiny, shard `shard` of 2) as scripts/wvs_survey.py runs it."""
    table = prompt_table()
    units = survey_units([(lang, table, "prompts") for lang in LANGUAGES], shard, 2, 11, "tiny")
    requests = [survey_request(u.prompts, Sampling(0.9, 0.95, 8, seed=u.seed), STOP) for u in units]
    replies, stats = generate_calls(lambda: generator, identity, requests, 2, cache)
    tables = [
        survey_table(u.prompts, r, model="tiny", family="f", language=u.language, stop=s.stop)
        for u, (_, s), r in zip(units, requests, replies, strict=True)
    ]
    return units, tables, stats


@pytest.fixture(scope="module")
def tiny(builtin_models: dict[str, Path]) -> Any:
    return load_generator(str(builtin_models["tiny-chat"]), backend="hf", batch_size=4)


@pytest.fixture(scope="module")
def identity(builtin_models: dict[str, Path]) -> dict:
    path = str(builtin_models["tiny-chat"])
    return model_identity("builtin:tiny-chat", path, None, {"backend": "hf", "batch_size": 4})


def test_one_job_answers_every_language_as_per_language_jobs(tiny: Any, identity: dict) -> None:
    units, tables, stats = job(tiny, identity, None)
    assert [u.language for u in units] == list(LANGUAGES) and stats.calls_run == 3
    for unit, table in zip(units, tables, strict=True):
        # shard 1 of 2 of 5 prompts: the last 2, with the seed of job (tiny, language, "1")
        assert unit.prompts["prompt_id"].to_list() == ["p3", "p4"] and unit.start == 3
        alone = survey(
            tiny,
            unit.prompts,
            model="tiny",
            family="f",
            language=unit.language,
            n_samples=2,
            sampling=Sampling(0.9, 0.95, 8, seed=unit.seed),
            stop=STOP,
        )
        assert table.equals(alone), unit.language
        assert table["language"].unique().to_list() == [unit.language] and table.height == 4
    assert len({u.seed for u in units}) == 3


def test_killed_job_reruns_only_its_unfinished_languages(
    tiny: Any, identity: dict, tmp_path: Path
) -> None:
    _, clean, _ = job(tiny, identity, None)
    killed = Counted(tiny, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        job(killed, identity, AnswerCache(tmp_path, "builtin:tiny-chat"))
    assert killed.calls == 2  # en and de finished, fr not

    rerun = Counted(tiny)
    _, tables, stats = job(rerun, identity, AnswerCache(tmp_path, "builtin:tiny-chat"))
    assert (rerun.calls, rerun.prompts) == (1, 2)
    assert (stats.calls_cached, stats.calls_run) == (2, 1)
    assert all(a.equals(b) for a, b in zip(tables, clean, strict=True))

    # a checkpoint removed (one language's segment file): only that language is answered again
    segments = sorted((tmp_path / "builtin_tiny-chat").glob("*/*.json"))
    assert len(segments) == 3
    segments[0].unlink()
    again = Counted(tiny)
    _, tables, stats = job(again, identity, AnswerCache(tmp_path, "builtin:tiny-chat"))
    assert (again.calls, stats.calls_cached) == (1, 2)
    assert all(a.equals(b) for a, b in zip(tables, clean, strict=True))

    # another shard is other work: nothing of shard 1 is reused
    other = Counted(tiny)
    job(other, identity, AnswerCache(tmp_path, "builtin:tiny-chat"), shard=0)
    assert other.calls == 3
