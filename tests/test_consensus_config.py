"""The consensus config section: schema defaults (each with its source: the paper, CulFiT's code
or a project choice), the demo section, and the paper preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polyculture.config_check import validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = REPO / "schemas" / "config.schema.yaml"


def with_defaults(section: dict) -> dict:
    """The consensus section as the workflow sees it: validated, every default filled."""
    config = {"seed": 1, "consensus": section}
    validate_config(config, CONFIG_SCHEMA)
    return config["consensus"]


def test_defaults_are_filled_recursively_and_given_values_kept():
    section = with_defaults({"paragraphs": {"sampling": {"temperature": 0.1}}})
    assert section["paragraphs"]["sampling"] == {
        "temperature": 0.1,
        "top_p": 0.95,
        "max_new_tokens": 256,
        "min_new_tokens": 0,
        "stop": [],
    }
    assert section["paragraphs"]["max_drop_rate"] == 0.2
    assert section["questions"]["sampling"]["temperature"] == 0.7
    assert section["requests"]["critique"]["en"].startswith("Please check")
    # stated in the paper (§3.2, §4.1)
    assert section["embedder"] == "Qwen/Qwen3-Embedding-0.6B"
    assert section["generator"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert section["general"]["cultural_per_general"] == 3
    assert section["ground_truth"]["skip_same_language"] is False
    assert section["variants"] == {
        "full": {"selection": "consistency", "region_filter": True, "language_filter": False},
        "random_selection": {
            "selection": "random",
            "region_filter": True,
            "language_filter": False,
        },
        "no_region_filter": {
            "selection": "consistency",
            "region_filter": False,
            "language_filter": False,
        },
    }
    # CulFiT's code: CANDLE combined_score >= 0.5, sampling temperature 0.7
    assert section["candle"]["min_combined_score"] == 0.5
    assert section["responses"]["sampling"]["temperature"] == 0.7
    # project choices (not stated in the paper): N = 10, K = 3, countries only, top-p 0.95
    assert section["samples"] == 10 and section["questions"]["k"] == 3
    assert section["candle"]["subject_types"] == ["countries"]


def test_every_consensus_default_names_its_source():
    """Each description of a key with a default that is a number, a model or a filter says
    where the value comes from (the paper, CulFiT's code, BLEnD's code or a project choice)."""
    schema = yaml.safe_load(
        (REPO / "schemas" / "config-consensus.schema.yaml").read_text(encoding="utf-8")
    )
    props = schema["properties"]
    keyed = {
        "generator": props["generator"],
        "embedder": props["embedder"],
        "samples": props["samples"],
        "questions.k": props["questions"]["properties"]["k"],
        "candle.min_combined_score": props["candle"]["properties"]["min_combined_score"],
        "candle.subject_types": props["candle"]["properties"]["subject_types"],
        "general.cultural_per_general": props["general"]["properties"]["cultural_per_general"],
        "ground_truth.skip_same_language": props["ground_truth"]["properties"][
            "skip_same_language"
        ],
        "responses (sampling)": props["responses"],
        "allow_other_generator": props["allow_other_generator"],
    }
    sources = ("paper §", "CulFiT's code", "BLEnD's code", "project choice", "Project choice")
    for key, prop in keyed.items():
        text = " ".join(prop["description"].split())
        assert any(s in text for s in sources), key
    # no default is called a paper value unless the paper states it
    assert "paper's values where" not in schema["description"]


def test_demo_section_is_tiny():
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    section = with_defaults(config["consensus"])
    assert (
        section["generator"] == "builtin:tiny-chat" and section["embedder"] == "builtin:tiny-embed"
    )
    assert section["samples"] == 3 and section["questions"]["k"] == 2 and section["shards"] == 2
    assert all((REPO / s["path"]).is_file() for s in section["sources"])


def test_paper_preset_validates_with_paper_values():
    config = yaml.safe_load((REPO / "configs" / "paper-consensus.yaml").read_text(encoding="utf-8"))
    validate_config(config, CONFIG_SCHEMA)
    section = config["consensus"]
    assert config["backend"]["generation"] == "vllm"
    assert section["generator"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert section["embedder"] == "Qwen/Qwen3-Embedding-0.6B"
    assert section["samples"] == 10
    assert section["general"]["hub"] == "CohereForAI/aya_dataset"
    assert max(section[s]["max_drop_rate"] for s in ("paragraphs", "responses", "critique")) <= 0.05


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"samples": 1}, "less than the minimum of 2"),
        ({"shards": 0}, "less than the minimum of 1"),
        ({"bogus": 1}, "'bogus' was unexpected"),
        ({"on_unknown_country": "skip"}, "'skip' is not one of"),
        ({"variants": {"v": {"selection": "best", "region_filter": True}}}, "'best' is not one of"),
        ({"questions": {"max_drop_rate": 1.5}}, "greater than the maximum of 1"),
    ],
)
def test_schema_rejects_bad_values(bad, message):
    with pytest.raises(Exception, match=message):
        validate_config({"seed": 1, "consensus": bad}, CONFIG_SCHEMA)


def test_generator_must_be_the_trained_model_unless_the_config_says_otherwise():
    from polyculture.consensus.config import check_self_supervision
    from polyculture.errors import ConfigError

    config = {
        "pipelines": {"consensus": True, "train": True},
        "consensus": {"generator": "meta-llama/Llama-3.1-8B-Instruct"},
        "train": {"base_model": "Qwen/Qwen3-8B"},
    }
    with pytest.raises(ConfigError) as err:
        check_self_supervision(config)
    assert "consensus.generator" in str(err.value) and "train.base_model" in str(err.value)
    assert "allow_other_generator" in str(err.value)
    check_self_supervision(
        {**config, "consensus": {**config["consensus"], "allow_other_generator": True}}
    )
    check_self_supervision({**config, "pipelines": {"consensus": True, "train": False}})
    check_self_supervision({**config, "train": {"base_model": "meta-llama/Llama-3.1-8B-Instruct"}})
    # the shipped configs keep the premise
    for path in (REPO / "config.yaml", REPO / "configs" / "paper-consensus.yaml"):
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert cfg["consensus"]["generator"] == cfg["train"]["base_model"], path
    assert with_defaults({})["allow_other_generator"] is False


def test_ground_truth_is_always_translated_unless_skipping_is_asked_for():
    import polars as pl

    from polyculture.consensus.critiques import translate_ground_truth, translation_plan

    greek = "Οι οικογένειες ψήνουν αρνί στη σούβλα το Πάσχα και το τρώνε μαζί."
    table = pl.DataFrame(
        {
            "question_id": ["a", "b"],
            "gt_text": ["Families roast lamb on a spit at Easter.", greek],
            "strong_language": ["en", "en"],
            "weak_language": ["el", "el"],
        }
    )
    assert translation_plan(table, 0.9, skip_same_language=False) == [True, True]
    assert translation_plan(table, 0.9, skip_same_language=True) == [True, False]
    calls = []

    def translate(texts, sources, targets):
        calls.append(list(texts))
        return [f"<el>{t}" for t in texts]

    out, _ = translate_ground_truth(table, translate, min_confidence=0.9)
    assert calls == [table["gt_text"].to_list()]  # the paper: every g* through the translator
    assert out["gt_translated"].to_list() == [True, True]
    assert with_defaults({})["ground_truth"]["skip_same_language"] is False
    preset = yaml.safe_load((REPO / "configs" / "paper-consensus.yaml").read_text(encoding="utf-8"))
    assert preset["consensus"]["ground_truth"]["skip_same_language"] is False
