"""The `llm` translator: the chat model itself, prompted to translate (greedy); any ISO 639-1
language."""

from __future__ import annotations

from typing import Any

from polyculture.backends.generation import Sampling, load_generator
from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings
from polyculture.languages import is_language_code, language_name

LLM_PROMPT = (
    "Translate the following text from {source} into {target}. "
    "Reply with the translation only.\n\n{text}"
)


def llm_translation_prompt(text: str, source: str, target: str) -> str:
    """The user message that asks a chat model for a translation."""
    return LLM_PROMPT.format(source=language_name(source), target=language_name(target), text=text)


class LLMTranslator(Translator):
    """A chat model prompted to translate, greedy, one conversation per text."""

    kind = "llm"

    def __init__(self, generator: Any, max_new_tokens: int, seed: int = 0) -> None:
        self.generator = generator
        self.sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)

    def supports(self, lang: str) -> bool:
        return is_language_code(lang)

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        convs = [[{"role": "user", "content": llm_translation_prompt(*item)}] for item in items]
        return [row[0] for row in self.generator.generate(convs, n=1, sampling=self.sampling)]


@TRANSLATORS.register("llm", needs_model=True)
def load_llm(
    settings: TranslatorSettings,
    *,
    backend: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    generator: Any = None,
    api: Any = None,
) -> LLMTranslator:
    """An LLMTranslator on `generator` (an already loaded Generator of the same model: no second
    copy is loaded) or on the settings' model loaded on `backend` (an API model spec on the
    openai backend, with `api` = the config's backend.openai)."""
    if generator is None:
        generator = load_generator(
            str(settings.model), backend=backend, batch_size=batch_size, openai=api
        )
    return LLMTranslator(generator, settings.max_new_tokens, seed=seed)
