"""Translation behind one interface (`Translator`), and the config's `translator:` section; the
kinds, each its own module registered in `polyculture.backends.registry.TRANSLATORS`:

- `llm`: the chat model itself, prompted to translate (greedy); any ISO 639-1 language.
- `nllb`: a seq2seq model through transformers (NLLB-200 style: source language set on the
  tokenizer, target language forced as the first generated token), languages with a
  FLORES-200 code in `nllb.FLORES200`.
- `google`: the Cloud Translation API v2 over HTTPS, key from the environment variable
  GOOGLE_API_KEY only (never from the config, never logged).
- `memory`: a translation memory (a table of segment pairs); a segment it lacks is dropped.

`Translator.translate(texts, source, target)` takes one language code or one per text for each
side. Texts whose source equals their target, and empty (blank) texts, come back unchanged
without a model call; identical (text, source, target) triples are translated once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyculture.backends.registry import TRANSLATORS
from polyculture.errors import ConfigError
from polyculture.languages import is_language_code


@dataclass(frozen=True)
class TranslatorSettings:
    """The config's `translator:` section: kind (llm | nllb | google), model (a loadable path or
    hub id, for llm and nllb) and the token budget of one translation."""

    kind: str
    model: str | None = None
    max_new_tokens: int = 256
    path: str | None = None  # kind memory: the segment-pair table (backends.translation.memory)
    #: kind google: concurrency and per-minute limits (backends.translation.google.GoogleSettings)
    google: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        kinds = TRANSLATORS.names()
        if self.kind not in kinds:
            raise ConfigError(
                "translator.kind", f"unknown kind {self.kind!r}; expected one of {', '.join(kinds)}"
            )
        if TRANSLATORS.entry(self.kind).info.get("needs_model") and not self.model:
            raise ConfigError("translator.model", f"kind '{self.kind}' needs a model")
        if TRANSLATORS.entry(self.kind).info.get("needs_path") and not self.path:
            raise ConfigError("translator.path", f"kind '{self.kind}' needs the path of its table")
        if self.model and self.model.startswith("builtin:"):
            raise ConfigError(
                "translator.model", f"'{self.model}' is a model spec; resolve it to a path first"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(
                "translator.max_new_tokens", f"expected >= 1, got {self.max_new_tokens}"
            )


def per_text(codes: str | Sequence[str], n: int, side: str) -> list[str]:
    """One language code per text: a single code repeated, or a sequence of length n."""
    if isinstance(codes, str):
        return [codes] * n
    codes = list(codes)
    if len(codes) != n:
        raise ConfigError(side, f"expected one language code per text ({n}), got {len(codes)}")
    return codes


class Translator:
    """Translates texts between ISO 639-1 languages; subclasses implement `_translate_unique`."""

    kind: str = ""

    def supports(self, lang: str) -> bool:
        """Whether this translator can translate from and into `lang`."""
        raise NotImplementedError

    def _check_codes(self, codes: list[str], side: str) -> None:
        for i, code in enumerate(codes):
            if not isinstance(code, str) or not is_language_code(code):
                raise ConfigError(f"{side}[{i}]", f"{code!r} is not an ISO 639-1 language code")
            if not self.supports(code):
                raise ConfigError(
                    f"{side}[{i}]", f"the {self.kind} translator does not support language '{code}'"
                )

    def translate(
        self,
        texts: Sequence[str],
        source: str | Sequence[str],
        target: str | Sequence[str],
    ) -> list[str]:
        """Translations of `texts` (one per text, in order) from source into target language(s)."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"texts[{i}]", f"expected a string, got {type(t).__name__}")
        src = per_text(source, len(texts), "source")
        tgt = per_text(target, len(texts), "target")
        self._check_codes(src, "source")
        self._check_codes(tgt, "target")
        out = list(texts)
        todo: dict[tuple[str, str, str], list[int]] = {}
        for i, (text, s, t) in enumerate(zip(texts, src, tgt, strict=True)):
            if s != t and text.strip():
                todo.setdefault((text, s, t), []).append(i)
        if not todo:
            return out
        keys = list(todo)
        done = self._translate_unique(keys)
        if len(done) != len(keys):
            raise RuntimeError(f"{self.kind} translator returned {len(done)} texts for {len(keys)}")
        for key, translation in zip(keys, done, strict=True):
            for i in todo[key]:
                out[i] = translation
        return out

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        """Translations of distinct (text, source, target) triples with source != target."""
        raise NotImplementedError
