"""Consensus stages with the real built-in tiny models: the assistant-only loss mask of a six-turn
training example under tiny-chat's chat template, constrained question generation with counted
drops, and answer embeddings scored for consistency."""

from __future__ import annotations

import polars as pl
import pytest

from polyculture.consensus.consistency import score_embeddings
from polyculture.consensus.dialogues import cultural_records, request_lookup, request_table
from polyculture.consensus.questions import (
    collect_questions,
    question_conversations,
    question_json_schema,
)
from polyculture.consensus.responses import (
    collect_responses,
    embedding_table,
    response_conversations,
    usable_responses,
)

REQUESTS = {
    "critique": {"en": "Please check your answer above."},
    "refine": {"en": "Now correct it."},
}


def _training_example() -> dict:
    table = pl.DataFrame(
        {
            "question_id": ["s-q0"],
            "country": ["Greece"],
            "weak_language": ["en"],
            "question_weak": ["What do Greek families roast at Easter?"],
            "weak_answer": ["They roast chicken."],
            "critique": ["The answer is not correct: families roast lamb on a spit."],
            "gt_weak": ["Greek families roast a whole lamb on a spit at Easter."],
        }
    )
    records, _ = cultural_records(
        table, request_lookup(request_table(REQUESTS, {})), variant="full", region_filter=True
    )
    return records[0]


def test_assistant_mask_covers_exactly_the_three_assistant_turns(builtin_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(builtin_models["tiny-chat"])
    messages = _training_example()["messages"]
    enc = tok.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=True, tokenize=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask) and set(mask) <= {0, 1}
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    assert len(spans) == 3
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    for (a, b), content in zip(spans, assistant, strict=True):
        assert tok.decode(ids[a:b], skip_special_tokens=True).strip() == content
        assert ids[b - 1] == tok.eos_token_id  # the end-of-turn token is learned too
    # every user turn and the role markers are outside the mask
    outside = tok.decode(
        [t for t, m in zip(ids, mask, strict=True) if not m], skip_special_tokens=True
    )
    for m in messages:
        if m["role"] == "user":
            assert m["content"] in outside


def test_tiny_model_questions_are_parsed_or_dropped_with_reasons(builtin_models):
    from polyculture.backends.generation import Sampling, load_generator

    paragraphs = pl.DataFrame(
        {
            "statement_id": ["s0", "s1", "s2"],
            "country": ["Greece", "Spain", "South Korea"],
            "topic": ["food of Greece", "food of Spain", "food of South Korea"],
            "statement": ["x", "y", "z"],
            "paragraph": [
                "At Easter, Greek families roast lamb on a spit.",
                "Dinner in Spain is usually eaten late in the evening.",
                "Kimchi is served with almost every Korean meal.",
            ],
        }
    )
    regions = ["Greece", "South Korea", "Spain"]
    gen = load_generator(str(builtin_models["tiny-chat"]), backend="hf", batch_size=4)
    schema = question_json_schema(2, regions, 60)
    template = (
        "Paragraph: {paragraph}\n\nWrite {k} questions about {topic}. Reply with JSON: "
        '{{"questions": [{{"question": ..., "country": ..., "language": ...}}]}}'
    )
    outputs = gen.generate_json(
        question_conversations(paragraphs, template, 2),
        schema,
        1,
        Sampling(temperature=0.7, max_new_tokens=160, seed=3),
    )
    questions, drops = collect_questions(
        paragraphs, outputs, k=2, regions=regions, supports=lambda lang: lang in {"el", "es", "ko"}
    )
    assert drops.total == 6
    assert questions.height + drops.dropped == 6
    for obj in (o[0] for o in outputs):
        assert obj is None or len(obj["questions"]) == 2
    assert set(questions["country"]) <= set(regions)
    assert set(questions["language"]) <= {"el", "es", "ko"}


def test_tiny_model_answers_embed_and_score(builtin_models):
    from polyculture.backends.embedding import embed_texts, load_embedder
    from polyculture.backends.generation import Sampling, load_generator

    pairs = pl.DataFrame(
        {
            "question_id": ["a", "b"],
            "language": ["el", "es"],
            "question_en": [
                "What is roasted at Easter in Greece?",
                "When do people in Spain eat dinner?",
            ],
            "question_local": ["Τι ψήνεται το Πάσχα στην Ελλάδα;", "¿Cuándo cenan en España?"],
        }
    )
    gen = load_generator(str(builtin_models["tiny-chat"]), backend="hf", batch_size=4)
    outputs = gen.generate(
        response_conversations(pairs), 3, Sampling(temperature=0.8, max_new_tokens=24, seed=5)
    )
    responses = collect_responses(pairs, outputs, 3)
    assert responses.height == 12
    usable, drops = usable_responses(responses)
    embedder = load_embedder(str(builtin_models["tiny-embed"]))
    table = embedding_table(usable, lambda texts: embed_texts(embedder, texts, batch_size=8))
    cons, samples, cdrops = score_embeddings(table)
    assert cons.height + 2 * cdrops.dropped == 4
    assert cons["consistency"].is_between(-1.0 - 1e-6, 1.0 + 1e-6).all()
    # same seed → same answers (deterministic sampling)
    again = gen.generate(
        response_conversations(pairs), 3, Sampling(temperature=0.8, max_new_tokens=24, seed=5)
    )
    assert again == outputs
    assert drops.total == 12


@pytest.mark.parametrize("bad_n", [0, 1])
def test_fewer_than_two_samples_is_rejected_by_the_config_schema(bad_n, repo_root):
    import jsonschema
    import yaml

    schema = yaml.safe_load((repo_root / "schemas" / "config-consensus.schema.yaml").read_text())
    samples = schema["properties"]["samples"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_n, samples)
    jsonschema.validate(2, samples)


def test_ground_truth_translation_with_the_tiny_llm_translator(builtin_models):
    from polyculture.backends.translation import TranslatorSettings, load_translator
    from polyculture.consensus.critiques import translate_ground_truth

    translator = load_translator(
        TranslatorSettings(kind="llm", model=str(builtin_models["tiny-chat"]), max_new_tokens=24),
        backend="hf",
        batch_size=4,
    )
    greek = "Το Πάσχα οι οικογένειες ψήνουν αρνί στη σούβλα και τρώνε μαζί στην αυλή."
    table = pl.DataFrame(
        {
            "question_id": ["a", "b"],
            "gt_text": ["At Easter, families roast lamb on a spit and eat together.", greek],
            "strong_language": ["en", "en"],
            "weak_language": ["el", "el"],
        }
    )
    out, drops = translate_ground_truth(
        table, translator.translate, min_confidence=0.9, skip_same_language=True
    )
    assert drops.total == 2
    by_id = {r["question_id"]: r for r in out.iter_rows(named=True)}
    # g* of 'b' already is Greek, the weak language: kept as it is, no model call
    assert by_id["b"]["gt_translated"] is False and by_id["b"]["gt_weak"] == greek
    if "a" in by_id:  # the tiny model may answer blank, which is dropped and counted
        assert by_id["a"]["gt_translated"] is True
        expected = translator.translate([table["gt_text"][0]], "en", "el")[0].strip()
        assert by_id["a"]["gt_weak"] == expected
    else:
        assert drops.reasons == {"empty_translation": 1}
