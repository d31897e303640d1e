"""BLEnD answer generation with the built-in tiny chat model (the real hf backend)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture import blend
from polyculture.llm import Sampling, load_generator


@pytest.fixture(scope="module")
def generator(builtin_models: dict[str, Path]):
    gen = load_generator(str(builtin_models["tiny-chat"]), backend="hf", batch_size=4)
    yield gen
    gen.close()


def test_answer_prompts_keeps_every_question_and_counts_empty_answers(
    generator, repo_root: Path
) -> None:
    data = repo_root / "resources" / "demo" / "blend"
    questions = blend.select_questions(
        blend.load_questions(blend.questions_path(data, "Greece")), 4
    )
    templates = blend.load_prompt_templates(blend.prompts_path(data, "Greece"))
    prompts = blend.build_prompts(questions, templates, "Greece", "el", "inst-4")
    sampling = Sampling(temperature=0, max_new_tokens=8, seed=3)
    answers, drops = blend.answer_prompts(
        generator, prompts, sampling, group="tiny/Greece/el/inst-4"
    )
    assert answers.columns == list(blend.RESPONSE_SCHEMA)
    assert answers["ID"].to_list() == questions["ID"].to_list()
    assert answers["response"].null_count() == 0
    empty = sum(1 for r in answers["response"].to_list() if not blend.clean_response(r))
    assert drops.total == 4 and drops.dropped == empty
    frame = drops.to_frame()
    assert frame["group"][0] == "tiny/Greece/el/inst-4"
    again, _ = blend.answer_prompts(generator, prompts, sampling)
    assert again.equals(answers)  # greedy and seeded: the same answers
    # the answers score without error against the demo annotations
    scores, _ = blend.score_responses(answers.drop("question"), data)
    assert scores["n_questions"][0] == 19 and scores["n_missing"][0] == 12
    assert isinstance(scores, pl.DataFrame)
