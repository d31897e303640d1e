"""polyculture.backends.translation: the llm translator on a tiny random Llama, the nllb
translator on a tiny random M2M100 (NLLB architecture) with an NLLB tokenizer holding all
FLORES-200 language tokens, and the google translator's request/response handling without
network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_llm import build_tiny_llama  # noqa: E402

from polyculture.backends.translation import TranslatorSettings, load_translator  # noqa: E402
from polyculture.backends.translation.google import (  # noqa: E402
    GOOGLE_ENDPOINT,
    GOOGLE_LANGUAGES,
    GOOGLE_MAX_SEGMENTS,
    google_chunks,
    google_request,
    parse_google_response,
)
from polyculture.backends.translation.llm import LLMTranslator, llm_translation_prompt  # noqa: E402
from polyculture.backends.translation.nllb import FLORES200, NLLBTranslator  # noqa: E402
from polyculture.errors import ConfigError  # noqa: E402
from polyculture.languages import BLEND_REGIONS, is_language_code  # noqa: E402

TEXTS = ["Family is important.", "", "Work is important.", "Family is important.", "   "]


@pytest.fixture(scope="module")
def llm_translator(tmp_path_factory: pytest.TempPathFactory) -> LLMTranslator:
    model = build_tiny_llama(tmp_path_factory.mktemp("tr-llama"))
    t = load_translator(TranslatorSettings("llm", str(model), max_new_tokens=6), backend="hf")
    assert isinstance(t, LLMTranslator)
    return t


class CountingGenerator:
    """Wraps a real Generator and records the conversations it was asked to continue."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[list] = []

    def generate(self, conversations, n, sampling):
        self.calls.append(list(conversations))
        return self.inner.generate(conversations, n, sampling)


def test_llm_translator_one_string_per_input(llm_translator: LLMTranslator) -> None:
    out = llm_translator.translate(TEXTS, "en", "de")
    assert len(out) == len(TEXTS) and all(isinstance(t, str) for t in out)
    assert out[1] == "" and out[4] == "   "  # blank texts come back unchanged
    assert out[0] == out[3]  # greedy: the same text translates the same way
    assert out == llm_translator.translate(TEXTS, "en", "de")


def test_llm_translator_skips_model_for_same_language_and_duplicates(
    llm_translator: LLMTranslator,
) -> None:
    counting = CountingGenerator(llm_translator.generator)
    t = LLMTranslator(counting, max_new_tokens=6)
    assert t.translate(TEXTS, "en", "en") == TEXTS
    assert counting.calls == []
    out = t.translate(TEXTS, ["en", "en", "de", "en", "en"], ["de", "de", "de", "de", "el"])
    assert out[2] == TEXTS[2]  # already German
    assert len(counting.calls) == 1
    prompts = [conv[0]["content"] for conv in counting.calls[0]]
    # "Family is important." en→de once (deduplicated); blanks and de→de never reach the model
    assert prompts == [llm_translation_prompt("Family is important.", "en", "de")]
    assert prompts[0] == (
        "Translate the following text from English into German. Reply with the translation only."
        "\n\nFamily is important."
    )


def test_llm_translator_reuses_a_loaded_generator(llm_translator: LLMTranslator) -> None:
    gen = llm_translator.generator
    t = load_translator(TranslatorSettings("llm", "unused/path"), generator=gen)
    assert isinstance(t, LLMTranslator) and t.generator is gen
    assert t.supports("am") and t.supports("su") and not t.supports("xx")


def test_bad_language_codes_named(llm_translator: LLMTranslator) -> None:
    with pytest.raises(ConfigError, match=r"target\[0\].*'english' is not an ISO 639-1"):
        llm_translator.translate(["a"], "en", "english")
    with pytest.raises(ConfigError, match=r"source\[1\].*'xx'"):
        llm_translator.translate(["a", "b"], ["en", "xx"], "de")
    with pytest.raises(ConfigError, match="one language code per text"):
        llm_translator.translate(["a", "b"], ["en"], "de")


def test_settings_errors() -> None:
    with pytest.raises(ConfigError, match="translator.kind"):
        TranslatorSettings("deepl")
    with pytest.raises(ConfigError, match="translator.model"):
        TranslatorSettings("nllb")
    with pytest.raises(ConfigError, match="resolve it to a path"):
        TranslatorSettings("llm", "builtin:tiny-chat")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        TranslatorSettings("llm", "x/y", max_new_tokens=0)


# ----------------------------------------------------------------------------------------------
# nllb


def build_tiny_nllb(dest: Path) -> Path:
    """A random 1-layer M2M100 (the NLLB architecture) with a character-level NLLB tokenizer
    that holds every FLORES-200 language token."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    chars = sorted(
        set(
            "".join(
                [
                    "Family is important.",
                    "Καλημέρα",
                    "الأسرة",
                    "가족",
                    "家庭",
                    "abcdefghijklmnopqrstuvwxyz",
                ]
            )
        )
    )
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "▁": 4}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = NllbTokenizer(vocab=vocab, merges=[])
    config = M2M100Config(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def nllb(tmp_path_factory: pytest.TempPathFactory) -> NLLBTranslator:
    path = build_tiny_nllb(tmp_path_factory.mktemp("nllb"))
    t = load_translator(TranslatorSettings("nllb", str(path), max_new_tokens=8), batch_size=2)
    assert isinstance(t, NLLBTranslator)
    return t


def test_flores_mapping_covers_languages_and_is_valid() -> None:
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    needed = set(BLEND_REGIONS.values()) | {
        "da",
        "nl",
        "pt",
        "de",
        "fr",
        "it",
        "ru",
        "ja",
        "hi",
        "tr",
    }
    assert needed <= set(FLORES200)
    assert len(FLORES200) >= 40
    assert all(is_language_code(code) for code in FLORES200)
    assert set(FLORES200.values()) <= set(FAIRSEQ_LANGUAGE_CODES)
    assert (
        FLORES200["ar"] == "arb_Arab"
        and FLORES200["zh"] == "zho_Hans"
        and FLORES200["fa"] == "pes_Arab"
    )


def test_nllb_translates_with_forced_target_token(nllb: NLLBTranslator) -> None:
    texts = ["Family is important.", "Καλημέρα", "", "家庭"]
    out = nllb.translate(texts, ["en", "el", "en", "zh"], "ko")
    assert len(out) == 4 and all(isinstance(t, str) for t in out) and out[2] == ""
    ids = nllb.generate_ids(["Family is important."], "en", "ko")
    # decoder start (</s>), then the forced target language token
    assert ids[0, 1].item() == nllb.tokenizer.convert_tokens_to_ids("kor_Hang")
    assert nllb.tokenizer.src_lang == "eng_Latn"
    enc = nllb.tokenizer(["Family"])["input_ids"][0]
    assert enc[0] == nllb.tokenizer.convert_tokens_to_ids("eng_Latn")  # source token first


def test_nllb_supports_and_errors(nllb: NLLBTranslator) -> None:
    assert nllb.supports("su") and nllb.supports("as") and nllb.supports("am")
    assert not nllb.supports("la") and not nllb.supports("xx")
    with pytest.raises(ConfigError, match=r"target\[0\].*does not support language 'la'"):
        nllb.translate(["x"], "en", "la")


# ----------------------------------------------------------------------------------------------
# google


def test_google_needs_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GOOGLE_API_KEY"):
        load_translator(TranslatorSettings("google"))
    monkeypatch.setenv("GOOGLE_API_KEY", "secret-key-123")
    t = load_translator(TranslatorSettings("google"))
    assert "secret-key-123" not in repr(t)
    assert t.supports("am") and t.supports("su") and not t.supports("xx")
    assert set(BLEND_REGIONS.values()) <= GOOGLE_LANGUAGES
    assert t.translate(["x", ""], "en", ["en", "de"]) == ["x", ""]  # no request needed


def test_google_request_and_response() -> None:
    req = google_request(["Guten Morgen", "Καλημέρα"], "de", "en", "k3y")
    assert req.full_url == GOOGLE_ENDPOINT
    assert "k3y" not in req.full_url
    assert req.get_method() == "POST"
    assert req.get_header("X-goog-api-key") == "k3y"
    assert json.loads(req.data.decode("utf-8")) == {
        "q": ["Guten Morgen", "Καλημέρα"],
        "source": "de",
        "target": "en",
        "format": "text",
    }
    body = json.dumps(
        {"data": {"translations": [{"translatedText": "Good morning"}, {"translatedText": "Hi"}]}}
    )
    assert parse_google_response(body.encode(), 2) == ["Good morning", "Hi"]
    with pytest.raises(RuntimeError, match="1 translations for 2"):
        parse_google_response(b'{"data": {"translations": [{"translatedText": "x"}]}}', 2)
    with pytest.raises(RuntimeError, match="unexpected response"):
        parse_google_response(b'{"error": {"code": 400}}', 1)


def test_google_chunks() -> None:
    chunks = google_chunks(["ab"] * (GOOGLE_MAX_SEGMENTS + 5))
    assert [len(c) for c in chunks] == [GOOGLE_MAX_SEGMENTS, 5]
    assert sum(chunks, []) == list(range(GOOGLE_MAX_SEGMENTS + 5))
    long = google_chunks(["x" * 15_000, "y" * 15_000, "z"])
    assert long == [[0], [1, 2]]
