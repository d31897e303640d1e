"""Translation backends behind one `Translator` interface (polyculture.backends.translation.base),
each registered by its `translator.kind` in `polyculture.backends.registry.TRANSLATORS`: `llm`
(the chat model, prompted), `nllb` (a seq2seq model), `google` (Cloud Translation API), `memory` (a table of segment pairs).
`load_translator` dispatches by kind.

Adding a kind: a module here that defines a `Translator` subclass and registers its loader with
`@TRANSLATORS.register("<kind>", needs_model=...)`, and its import below."""

from __future__ import annotations

from typing import Any

# the kinds register themselves on import, in this order (that of TRANSLATORS.names())
# isort: off
import polyculture.backends.translation.llm  # noqa: F401
import polyculture.backends.translation.nllb  # noqa: F401
import polyculture.backends.translation.google  # noqa: F401
import polyculture.backends.translation.memory  # noqa: F401

# isort: on
from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings

__all__ = ["Translator", "TranslatorSettings", "load_translator"]


def load_translator(
    settings: TranslatorSettings,
    *,
    backend: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    generator: Any = None,
    api: Any = None,
) -> Translator:
    """The translator the settings describe, loaded by the backend registered as its kind. For
    kind llm an already loaded Generator of the same model can be passed (no second copy is
    loaded); otherwise one is loaded on `backend` (an API model spec on the openai backend, with
    `api` = the config's backend.openai)."""
    return TRANSLATORS.get(settings.kind)(
        settings, backend=backend, batch_size=batch_size, seed=seed, generator=generator, api=api
    )
