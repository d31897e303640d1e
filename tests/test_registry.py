"""The backend registries (polyculture.backends.registry) and the parsed model spec
(polyculture.backends.spec.ModelSpec): names, dispatch, errors; no model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyculture.backends.embedding import load_embedder
from polyculture.backends.generation import BACKENDS, load_generator
from polyculture.backends.registry import EMBEDDERS, GENERATORS, TRANSLATORS, Registry
from polyculture.backends.spec import model_specs, parse_model_spec
from polyculture.backends.translation import TranslatorSettings, load_translator
from polyculture.errors import ConfigError, ModelSpecError


def test_every_backend_is_registered_by_name() -> None:
    assert GENERATORS.names() == ("hf", "vllm", "openai")
    assert BACKENDS == ("auto", "hf", "vllm")  # openai is chosen by the spec, not the config
    assert TRANSLATORS.names() == ("llm", "nllb", "google", "memory")
    assert [TRANSLATORS.entry(k).info["needs_model"] for k in TRANSLATORS.names()] == [
        True,
        True,
        False,
        False,
    ]
    assert EMBEDDERS.names() == ("sentence-transformers",)


def test_a_registry_dispatches_and_refuses_unknown_and_repeated_names() -> None:
    registry = Registry("probe", "backend.probe")

    @registry.register("echo")
    def echo(x: str) -> str:
        return f"echo {x}"

    registry.register("hidden", selectable=False)(lambda x: x)
    assert registry.get("echo")("a") == "echo a"
    assert registry.names() == ("echo", "hidden")
    assert registry.names(selectable_only=True) == ("echo",)
    with pytest.raises(ConfigError, match=r"'backend.probe'.*unknown probe backend 'nope'.*echo"):
        registry.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("echo")(echo)


def test_loaders_refuse_unknown_names_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'tgi'; expected one of auto, hf, vllm"):
        load_generator("org/model", backend="tgi")
    with pytest.raises(
        ConfigError, match="unknown kind 'deepl'; expected one of llm, nllb, google, memory"
    ):
        TranslatorSettings("deepl")
    with pytest.raises(ConfigError, match="'translator.model'.*kind 'nllb' needs a model"):
        TranslatorSettings("nllb")
    with pytest.raises(ConfigError, match="unknown embedding backend 'clip'"):
        load_embedder("org/model", kind="clip")
    with pytest.raises(ConfigError, match="cannot load a LoRA adapter"):
        load_generator("openai:gpt-4o", adapter="results/train/x/adapter")
    assert callable(load_translator)


def test_model_specs_are_parsed_once_with_their_placement(tmp_path: Path) -> None:
    hub = parse_model_spec("meta-llama/Llama-3.1-8B-Instruct")
    built = parse_model_spec("builtin:tiny-chat")
    local = parse_model_spec(str(tmp_path))
    api = parse_model_spec("openai@local:judge")
    assert [s.kind for s in (hub, built, local, api)] == ["hub", "builtin", "directory", "api"]
    assert [s.gpus for s in (hub, built, local, api)] == [1, 1, 1, 0]
    assert [s.needs_network for s in (hub, built, local, api)] == [False, False, False, True]
    assert [s.needs_prefetch for s in (hub, built, local, api)] == [True, False, False, False]
    assert built.name == "tiny-chat" and built.path("results/models") == "results/models/tiny-chat"
    assert (api.endpoint, api.api_model, api.endpoint_is_url) == ("local", "judge", False)
    assert (
        hub.path("x") == hub.raw and api.path("x") == api.raw and local.path("x") == str(tmp_path)
    )
    assert parse_model_spec(hub.raw, engine={"tensor_parallel_size": 2}).engine == {
        "tensor_parallel_size": 2
    }
    config = {
        "consensus": {"generator": "builtin:tiny-chat", "embedder": "org/embed"},
        "eval_models": [{"name": "a", "model": "openai:gpt-4o"}],
        "alignment": {"mixed_model": "not a model key"},
    }
    assert [(k, s.kind) for k, s in model_specs(config)] == [
        ("consensus.generator", "builtin"),
        ("consensus.embedder", "hub"),
        ("eval_models[0].model", "api"),
    ]
    with pytest.raises(ConfigError, match=r"'wvs.judge'.*unknown built-in model 'huge'"):
        model_specs({"wvs": {"judge": "builtin:huge"}})
    with pytest.raises(ModelSpecError, match="neither a Hugging Face id"):
        parse_model_spec("not a model")
