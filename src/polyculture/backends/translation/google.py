"""The `google` translator: the Cloud Translation API v2 over HTTPS, key from the environment
variable GOOGLE_API_KEY only (never from the config, never logged)."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings
from polyculture.errors import ConfigError

log = logging.getLogger(__name__)

GOOGLE_KEY_ENV = "GOOGLE_API_KEY"
GOOGLE_ENDPOINT = "https://translation.googleapis.com/language/translate/v2"
GOOGLE_MAX_SEGMENTS = 100  # the API takes at most 128 segments per request
GOOGLE_MAX_CHARS = 20_000  # and recommends well under 30k code points per request

# ISO 639-1 codes that Cloud Translation v2 accepts (its published language list, 639-1 only).
GOOGLE_LANGUAGES: frozenset[str] = frozenset(
    [
        "af",
        "ak",
        "am",
        "ar",
        "as",
        "ay",
        "az",
        "ba",
        "be",
        "bg",
        "bm",
        "bn",
        "bo",
        "bs",
        "ca",
        "co",
        "cs",
        "cv",
        "cy",
        "da",
        "de",
        "dv",
        "dz",
        "ee",
        "el",
        "en",
        "eo",
        "es",
        "et",
        "eu",
        "fa",
        "ff",
        "fi",
        "fj",
        "fo",
        "fr",
        "fy",
        "ga",
        "gd",
        "gl",
        "gn",
        "gu",
        "gv",
        "ha",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "ig",
        "is",
        "it",
        "ja",
        "jv",
        "ka",
        "kg",
        "kk",
        "km",
        "kn",
        "ko",
        "kr",
        "ku",
        "ky",
        "la",
        "lb",
        "lg",
        "li",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mh",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "no",
        "nr",
        "ny",
        "oc",
        "om",
        "or",
        "os",
        "pa",
        "pl",
        "ps",
        "pt",
        "qu",
        "rn",
        "ro",
        "ru",
        "rw",
        "sa",
        "sd",
        "se",
        "sg",
        "si",
        "sk",
        "sl",
        "sm",
        "sn",
        "so",
        "sq",
        "sr",
        "ss",
        "st",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "ti",
        "tk",
        "tl",
        "tn",
        "to",
        "tr",
        "ts",
        "tt",
        "ty",
        "ug",
        "uk",
        "ur",
        "uz",
        "ve",
        "vi",
        "wo",
        "xh",
        "yi",
        "yo",
        "zh",
        "zu",
        "ab",
        "br",
        "ce",
        "ch",
        "kl",
        "kv",
    ]
)


def google_api_key() -> str:
    """The Cloud Translation API key from the environment; fails naming the variable."""
    key = os.environ.get(GOOGLE_KEY_ENV, "").strip()
    if not key:
        raise ConfigError(
            "translator.kind",
            f"kind 'google' needs an API key in the environment variable {GOOGLE_KEY_ENV} "
            "(it is never read from the config)",
        )
    return key


def google_request(
    texts: Sequence[str], source: str, target: str, key: str
) -> urllib.request.Request:
    """The HTTPS request that translates `texts` with Cloud Translation v2 (key in a header, so
    that it never appears in a URL or log)."""
    body = json.dumps(
        {"q": list(texts), "source": source, "target": target, "format": "text"}, ensure_ascii=False
    ).encode("utf-8")
    return urllib.request.Request(
        GOOGLE_ENDPOINT,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "X-Goog-Api-Key": key},
    )


def parse_google_response(payload: bytes, expected: int) -> list[str]:
    """The translated texts of a Cloud Translation v2 response body."""
    try:
        data = json.loads(payload)
        translations = [t["translatedText"] for t in data["data"]["translations"]]
    except (ValueError, KeyError, TypeError) as err:
        raise RuntimeError(
            f"Cloud Translation: unexpected response ({err}): {payload[:300]!r}"
        ) from None
    if len(translations) != expected:
        raise RuntimeError(
            f"Cloud Translation: {len(translations)} translations for {expected} texts"
        )
    return translations


def google_chunks(texts: Sequence[str]) -> list[list[int]]:
    """Indexes of `texts` split into requests of at most GOOGLE_MAX_SEGMENTS segments and about
    GOOGLE_MAX_CHARS characters."""
    chunks: list[list[int]] = []
    cur: list[int] = []
    chars = 0
    for i, t in enumerate(texts):
        if cur and (len(cur) >= GOOGLE_MAX_SEGMENTS or chars + len(t) > GOOGLE_MAX_CHARS):
            chunks.append(cur)
            cur, chars = [], 0
        cur.append(i)
        chars += len(t)
    if cur:
        chunks.append(cur)
    return chunks


class GoogleTranslator(Translator):
    """Cloud Translation API v2 (REST); retries on rate limits and server errors."""

    kind = "google"

    def __init__(self, attempts: int = 5, timeout: float = 60.0) -> None:
        self._key = google_api_key()
        self.attempts = attempts
        self.timeout = timeout

    def __repr__(self) -> str:
        return "GoogleTranslator()"

    def supports(self, lang: str) -> bool:
        return lang in GOOGLE_LANGUAGES

    def _post(self, texts: list[str], source: str, target: str) -> list[str]:
        for attempt in range(self.attempts):
            req = google_request(texts, source, target, self._key)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return parse_google_response(resp.read(), len(texts))
            except urllib.error.HTTPError as err:
                detail = err.read()[:500].decode("utf-8", "replace")
                if err.code in (429, 500, 502, 503, 504) and attempt + 1 < self.attempts:
                    log.warning("Cloud Translation HTTP %s; retrying", err.code)
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation HTTP {err.code}: {detail}") from None
            except urllib.error.URLError as err:
                if attempt + 1 < self.attempts:
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation unreachable: {err.reason}") from None
        raise RuntimeError("Cloud Translation: no attempts made")

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        out: list[str] = [""] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_, s, t) in enumerate(items):
            groups.setdefault((s, t), []).append(i)
        for (s, t), idx in groups.items():
            texts = [items[i][0] for i in idx]
            for chunk in google_chunks(texts):
                for j, translation in zip(
                    chunk, self._post([texts[k] for k in chunk], s, t), strict=True
                ):
                    out[idx[j]] = translation
        return out


@TRANSLATORS.register("google", needs_model=False)
def load_google(settings: TranslatorSettings, **_: Any) -> GoogleTranslator:
    """A GoogleTranslator (the key from GOOGLE_API_KEY); the settings' model does not apply."""
    return GoogleTranslator()
