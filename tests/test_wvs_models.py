"""WVS stages 4-6 with the real built-in tiny chat model: survey responses, parsing and
JSON-constrained stance judging, every response and summary accounted for."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture.backends.generation import Sampling, load_generator
from polyculture.wvs.prompts import build_prompts, survey, translate_prompts
from polyculture.wvs.stances import judge_items, score_responses
from polyculture.wvs.surveys import parse_responses
from polyculture.wvs.topics import load_templates, load_topics

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def generator(builtin_models: dict[str, Path]):
    gen = load_generator(str(builtin_models["tiny-chat"]), backend="hf", batch_size=8)
    yield gen
    gen.close()


def test_survey_parse_judge_with_tiny_chat(repo_root: Path, generator):
    topics = load_topics(repo_root / "resources/wvs/topics.yaml")
    templates = load_templates(repo_root / "resources/demo/wvs/templates.yaml")
    chosen = [topics["f121"], topics["f144_02"], topics["e069_04"]]
    prompts, _ = translate_prompts(build_prompts(chosen, templates, 3, seed=5), "en", None)
    responses = survey(
        generator,
        prompts,
        model="tiny",
        family="tiny",
        language="en",
        n_samples=2,
        sampling=Sampling(temperature=0.7, top_p=0.95, max_new_tokens=80, seed=3),
    )
    assert responses.height == 6 and responses["response_id"].is_unique().all()
    again = survey(
        generator,
        prompts,
        model="tiny",
        family="tiny",
        language="en",
        n_samples=2,
        sampling=Sampling(temperature=0.7, top_p=0.95, max_new_tokens=80, seed=3),
    )
    assert again["response"].to_list() == responses["response"].to_list()  # seeded
    parsed, counters = parse_responses(responses, min_items=2, identifier=None)
    counter = counters[("tiny", "en")]
    assert counter.total == 6
    assert parsed["response_id"].n_unique() + counter.dropped == 6
    labels = judge_items(
        generator, parsed, topics, Sampling(temperature=0.7, top_p=1.0, max_new_tokens=12, seed=1)
    )
    assert labels.height == parsed.height
    assert set(labels["stance"].drop_nulls()) <= {"pro", "con", "null"}
    scored, judge_drops, score_drops = score_responses(labels)
    if parsed.height:
        assert judge_drops[("tiny", "en")].total == parsed.height
        kept = scored.height + score_drops[("tiny", "en")].dropped
        assert kept == parsed["response_id"].n_unique()
        assert scored["pro_score"].is_between(0, 1).all()
    # a judge cut off before its object closes gives invalid (None) judgements, counted
    cut = judge_items(generator, parsed.head(4), topics, Sampling(temperature=0, max_new_tokens=2))
    if cut.height:
        assert cut["stance"].null_count() == cut.height
        _, drops, _ = score_responses(cut)
        assert sum(d.reasons["judge_invalid"] for d in drops.values()) == cut.height
    assert isinstance(scored, pl.DataFrame)
