"""polyculture.backends.open: the context managers the scripts open their models with, on a tiny
random Llama (hf backend) and a tiny random sentence-transformers embedder: the load calls are
those the scripts made before, the outputs equal a direct load's, and what was opened is freed at
exit (a generator the caller passed in is left open)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_embed import build_tiny_embedder  # noqa: E402
from test_llm import build_tiny_llama  # noqa: E402

from polyculture.backends.embedding import embed_texts, load_embedder  # noqa: E402
from polyculture.backends.generation import (  # noqa: E402
    Sampling,
    generator_kwargs,
    load_generator,
)
from polyculture.backends.open import (  # noqa: E402
    generator_call,
    open_embedder,
    open_generator,
    open_translator,
    shares_model,
    translator_call,
)
from polyculture.backends.translation import TranslatorSettings  # noqa: E402
from polyculture.backends.translation.llm import LLMTranslator  # noqa: E402

BACKEND = {"generation": "hf", "batch_size": 4, "dtype": "float32", "vllm_max_model_len": 64}
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=5, seed=11)
CONVS = [[{"role": "user", "content": "Hello there"}], [{"role": "user", "content": "Bye"}]]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_llama(tmp_path_factory.mktemp("open-llama")))


def test_generator_call_is_the_scripts_load_call() -> None:
    kwargs = generator_kwargs(BACKEND)
    assert generator_call("/m", BACKEND) == ("/m", kwargs)
    eval_model = {"model": "/m", "adapter": "/a", "merge_adapter": True}
    assert generator_call(eval_model, BACKEND) == (
        "/m",
        {"adapter": "/a", "merge_adapter": True, **kwargs},
    )
    assert kwargs["engine"] == {"max_model_len": 64} and kwargs["batch_size"] == 4


def test_translator_call_is_the_scripts_load_call() -> None:
    tr = {"kind": "llm", "model": "/m", "max_new_tokens": 7}
    backend = {**BACKEND, "openai": {"timeout_s": 5}}
    settings, kwargs = translator_call(tr, backend)
    assert settings == TranslatorSettings("llm", "/m", max_new_tokens=7)
    assert kwargs == {"backend": "hf", "batch_size": 4, "api": {"timeout_s": 5}}
    assert translator_call(tr, backend, generator="g")[1]["generator"] == "g"


def test_shares_model() -> None:
    assert shares_model({"kind": "llm", "model": "/m"}, "/m")
    assert shares_model({"kind": "llm", "model": "/m"}, {"model": "/m", "adapter": None})
    assert not shares_model({"kind": "nllb", "model": "/m"}, "/m")
    assert not shares_model({"kind": "llm", "model": "/other"}, "/m")


def test_open_generator_outputs_a_direct_load_and_closes(llama: str) -> None:
    direct = load_generator(llama, **generator_kwargs(BACKEND))
    expected = direct.generate(CONVS, 2, SAMPLING)
    direct.close()
    with open_generator({"model": llama, "adapter": None, "merge_adapter": False}, BACKEND) as g:
        assert g.generate(CONVS, 2, SAMPLING) == expected
    assert not hasattr(g, "lm")  # closed: the weights are freed


def test_nothing_loaded_when_not_asked() -> None:
    with open_generator("/no/such/model", BACKEND, load=False) as g:
        assert g is None
    with open_translator({"kind": "llm", "model": "/no/such"}, BACKEND, load=False) as t:
        assert t is None
    with open_embedder("/no/such/embedder", load=False) as e:
        assert e is None


def test_open_translator_closes_only_its_own_generator(llama: str) -> None:
    tr = {"kind": "llm", "model": llama, "max_new_tokens": 4}
    with open_translator(tr, BACKEND) as own:
        assert isinstance(own, LLMTranslator)
        out = own.translate(["Family"], "en", "de")
    assert not hasattr(own.generator, "lm")
    with open_generator(llama, BACKEND) as g:
        with open_translator(tr, BACKEND, generator=g) as shared:
            assert shared.generator is g
            assert shared.translate(["Family"], "en", "de") == out
        assert hasattr(g, "lm")  # the caller's generator stays open
    assert not hasattr(g, "lm")


def test_lazy_translator_loads_on_first_use(llama: str) -> None:
    tr = {"kind": "llm", "model": llama, "max_new_tokens": 4}
    with open_translator(tr, BACKEND, lazy=True) as lazy:
        assert lazy.loaded is None
        assert lazy.translate(["Family"], "en", "en") == ["Family"]
        assert isinstance(lazy.loaded, LLMTranslator)
    assert lazy.loaded is None
    with open_translator({"kind": "llm", "model": "/no/such"}, BACKEND, lazy=True) as unused:
        pass  # never used: never loaded, so the missing model is never opened
    assert unused.loaded is None


def test_open_embedder_embeds_as_a_direct_load(tmp_path: Path) -> None:
    path = str(build_tiny_embedder(tmp_path / "tiny-embed"))
    texts = ["family", "work and leisure"]
    expected = embed_texts(load_embedder(path, device="cpu"), texts, batch_size=2)
    with open_embedder(path) as embedder:
        got = embed_texts(embedder, texts, batch_size=2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
