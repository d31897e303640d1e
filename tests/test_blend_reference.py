"""The BLEnD scorer on the real annotations of all 16 regions (../shared/data/blend).

Expected numbers are computed here from the raw JSON with nothing but the json module, so the
scorer is checked against the data, not against itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyculture import blend
from polyculture.languages import BLEND_REGIONS

pytestmark = pytest.mark.reference

REGIONS = sorted(BLEND_REGIONS)


@pytest.fixture(scope="module")
def blend_dir(shared_data: Path) -> Path:
    return shared_data / "blend"


def raw(blend_dir: Path, country: str) -> dict:
    return json.loads(
        (blend_dir / "annotations" / f"{country}_data.json").read_text(encoding="utf-8")
    )


def raw_is_valid(entry: dict) -> bool:
    """The paper's skip rules, written out on the raw JSON."""
    idks = entry["idks"]
    if idks.get("no-answer", 0) + idks.get("not-applicable", 0) >= 3:
        return False
    return idks.get("idk", 0) < 5 and len(entry["annotations"]) > 0


def top_answer(entry: dict, field: str) -> str:
    """First non-blank answer of the most-voted cluster ('' when it has none)."""
    top = max(entry["annotations"], key=lambda a: a["count"])
    return next((a for a in top[field] if a.strip()), "")


@pytest.mark.parametrize("country", REGIONS)
def test_skip_rules_give_the_valid_counts_the_data_implies(blend_dir: Path, country: str) -> None:
    data = raw(blend_dir, country)
    expected = sum(raw_is_valid(e) for e in data.values())
    ann = blend.load_annotations(blend.annotations_path(blend_dir, country))
    assert len(ann) == len(data) == 500
    pq = blend.score_run(ann, {}, country=country, language="en")
    assert blend.summarize(pq)["n_valid"][0] == expected
    assert 400 < expected < 500


@pytest.mark.parametrize("country", REGIONS)
def test_top_cluster_answers_score_100_and_empty_answers_0(blend_dir: Path, country: str) -> None:
    data = raw(blend_dir, country)
    ann = blend.load_annotations(blend.annotations_path(blend_dir, country))
    valid = [qid for qid, e in data.items() if raw_is_valid(e)]
    prompts = blend.load_prompt_templates(blend.prompts_path(blend_dir, country))
    assert {"inst-4", "pers-3"} <= set(prompts)
    for language in blend.run_languages(country):
        field = "en_answers" if language == "en" else "answers"
        answers = {qid: top_answer(data[qid], field) for qid in valid}
        # A question whose top cluster has no answer in this language cannot be answered.
        answerable = sum(1 for a in answers.values() if a)
        prompt_text = {qid: "Answer:" for qid in valid}
        s = blend.summarize(
            blend.score_run(ann, answers, country=country, language=language, prompts=prompt_text)
        ).row(0, named=True)
        assert s["n_valid"] == len(valid)
        assert s["sem_b"] == pytest.approx(100 * answerable / len(valid))
        assert s["sem_w"] == pytest.approx(s["sem_b"])
        if language != "en":
            assert s["sem_b"] == 100.0  # every valid top cluster has a local answer
        empty = blend.summarize(
            blend.score_run(ann, dict.fromkeys(valid, ""), country=country, language=language)
        ).row(0, named=True)
        assert (empty["sem_b"], empty["sem_w"], empty["n_valid"]) == (0.0, 0.0, len(valid))


@pytest.mark.parametrize("country", REGIONS)
def test_a_lower_voted_cluster_gives_sem_w_below_sem_b(blend_dir: Path, country: str) -> None:
    data = raw(blend_dir, country)
    ann = blend.load_annotations(blend.annotations_path(blend_dir, country))
    language = blend.run_languages(country)[-1]
    field = "en_answers" if language == "en" else "answers"
    responses = {}
    for qid, e in data.items():
        clusters = sorted(e["annotations"], key=lambda a: -a["count"])
        lower = [c for c in clusters if c["count"] < clusters[0]["count"]] if clusters else []
        if raw_is_valid(e) and lower:
            responses[qid] = next((a for a in lower[0][field] if a.strip()), "")
    assert len(responses) > 100
    s = blend.summarize(blend.score_run(ann, responses, country=country, language=language)).row(
        0, named=True
    )
    assert 0 < s["sem_w"] < s["sem_b"]
    # each matched question earns at most its own weight: below 1 unless it also names the top
    assert s["sem_b"] <= 100 * len(responses) / s["n_valid"] + 1e-9


@pytest.mark.parametrize("country", REGIONS)
def test_paper_templates_build_for_every_region_and_language(blend_dir: Path, country: str) -> None:
    questions = blend.load_questions(blend.questions_path(blend_dir, country))
    templates = blend.load_prompt_templates(blend.prompts_path(blend_dir, country))
    assert questions.height == 500
    for language in blend.run_languages(country):
        for prompt_id in ("inst-4", "pers-3"):
            built = blend.build_prompts(questions, templates, country, language, prompt_id)
            assert built.height == 500
            assert all(q in p for q, p in zip(built["question"], built["prompt"], strict=True))
            assert "{q}" not in built["prompt"][0]
