"""BLEnD answer generation with the built-in tiny chat model (the real hf backend)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture import blend
from polyculture.backends.generation import Sampling, load_generator


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


def test_raw_prompt_format_sends_the_text_without_the_chat_template(
    generator, repo_root: Path
) -> None:
    from polyculture.errors import ConfigError, InputError

    data = repo_root / "resources" / "demo" / "blend"
    questions = blend.select_questions(
        blend.load_questions(blend.questions_path(data, "Greece")), 2
    )
    templates = blend.load_prompt_templates(blend.prompts_path(data, "Greece"))
    prompts = blend.build_prompts(questions, templates, "Greece", "el", "inst-4")
    texts = prompts["prompt"].to_list()
    tok = generator.tokenizer
    chat = tok.decode(generator.prompt_ids([[{"role": "user", "content": texts[0]}]])[0])
    raw = tok.decode(generator.raw_prompt_ids(texts[:1])[0])
    # the chat rendering wraps the prompt in template markers; the raw one is the prompt itself
    # (plus the tokenizer's own BOS, if it adds one, as a plain tokenizer call does)
    markers = [m for m in ("<|im_start|>", "<|im_end|>", "user", "assistant") if m in chat]
    assert markers and texts[0] in chat and chat != texts[0]
    assert raw.removeprefix(tok.bos_token or "") == texts[0]
    assert not any(m in raw.replace(texts[0], "") for m in markers)
    sampling = Sampling(temperature=0, max_new_tokens=8, seed=3)
    answers, drops = blend.answer_prompts(generator, prompts, sampling, prompt_format="raw")
    assert answers["ID"].to_list() == questions["ID"].to_list() and drops.total == 2
    direct = generator.generate_raw(texts, n=1, sampling=sampling)
    assert answers["response"].to_list() == [row[0] for row in direct]
    with pytest.raises(ConfigError, match=r"evaluate\.blend\.prompt_format"):
        blend.answer_prompts(generator, prompts, sampling, prompt_format="template")
    with pytest.raises(InputError, match="non-empty strings"):
        generator.generate_raw(["ok", ""], n=1, sampling=sampling)


def test_prompt_format_defaults_to_chat_and_names_its_source(repo_root: Path) -> None:
    import yaml

    from polyculture.config_check import validate_config

    schema = repo_root / "schemas" / "config.schema.yaml"
    config: dict = {"seed": 1}
    validate_config(config, schema)
    assert config["evaluate"]["blend"]["prompt_format"] == "chat"
    section = yaml.safe_load(
        (repo_root / "schemas" / "config-evaluate.schema.yaml").read_text(encoding="utf-8")
    )
    key = section["properties"]["blend"]["properties"]["prompt_format"]
    assert key["enum"] == list(blend.PROMPT_FORMATS)
    assert "BLEnD's code" in key["description"] and "nlee0212/BLEnD" in key["description"]
