"""The `google` translator: the Cloud Translation API v2 over HTTPS, key from the environment
variable GOOGLE_API_KEY only (never from the config, never logged).

Requests of up to GOOGLE_MAX_SEGMENTS segments go out `translator.google.max_concurrency` at a
time, within the requests-per-minute and characters-per-minute limits the config gives
(polyculture.backends.ratelimit; Cloud Translation's quotas count characters, not tokens); each
translation lands at its text's index, so the output is the same whatever the concurrency."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from polyculture.backends.ratelimit import RateLimiter
from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings
from polyculture.errors import ConfigError

log = logging.getLogger(__name__)

GOOGLE_KEY_ENV = "GOOGLE_API_KEY"
GOOGLE_ENDPOINT = "https://translation.googleapis.com/language/translate/v2"
GOOGLE_MAX_SEGMENTS = 100  # the API takes at most 128 segments per request
GOOGLE_MAX_CHARS = 20_000  # and recommends well under 30k code points per request
# Our choice: 4 requests in flight cut a job's wait on the network about fourfold while staying a
# small share of a project's quota; the per-minute limits below are what bounds the rate.
GOOGLE_CONCURRENCY = 4

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


@dataclass(frozen=True)
class GoogleSettings:
    """The config's translator.google section: requests in flight, and the per-minute limits
    (None: none) of requests and of characters sent."""

    max_concurrency: int = GOOGLE_CONCURRENCY
    requests_per_minute: float | None = None
    characters_per_minute: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.max_concurrency, int) and self.max_concurrency >= 1):
            raise ConfigError(
                "translator.google.max_concurrency", f"expected >= 1, got {self.max_concurrency!r}"
            )
        for key in ("requests_per_minute", "characters_per_minute"):
            value = getattr(self, key)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            ):
                raise ConfigError(
                    f"translator.google.{key}", f"expected > 0 or null, got {value!r}"
                )

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> GoogleSettings:
        """Settings from a translator.google mapping (an unknown key fails naming it)."""
        section = dict(section or {})
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"translator.google.{unknown[0]}", "unknown key")
        return cls(**section)


#: A request function: the translations of (texts, source, target), one per text, in order;
#: it raises urllib.error.HTTPError / URLError as urllib does (those are retried).
Send = Callable[[list[str], str, str], list[str]]


class GoogleTranslator(Translator):
    """Cloud Translation API v2 (REST); requests in parallel within the configured limits,
    retried on rate limits, server errors and lost connections. `send` replaces the HTTPS
    request (tests), `limiter` and `sleep` the rate limiter and the wait between retries."""

    kind = "google"

    def __init__(
        self,
        attempts: int = 5,
        timeout: float = 60.0,
        *,
        settings: GoogleSettings | None = None,
        send: Send | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = google_api_key() if send is None else ""
        self.attempts = attempts
        self.timeout = timeout
        self.settings = settings or GoogleSettings()
        self._send = send or self._https
        self._sleep = sleep
        self.limiter = limiter or RateLimiter(
            self.settings.requests_per_minute,
            self.settings.characters_per_minute,
            name="translator.google",
            endpoint=GOOGLE_ENDPOINT,
        )

    def __repr__(self) -> str:
        return "GoogleTranslator()"

    def supports(self, lang: str) -> bool:
        return lang in GOOGLE_LANGUAGES

    def _https(self, texts: list[str], source: str, target: str) -> list[str]:
        req = google_request(texts, source, target, self._key)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return parse_google_response(resp.read(), len(texts))

    def _post(self, texts: list[str], source: str, target: str) -> list[str]:
        chars = sum(len(t) for t in texts)
        for attempt in range(self.attempts):
            self.limiter.acquire(chars)
            try:
                return self._send(texts, source, target)
            except urllib.error.HTTPError as err:
                detail = err.read()[:500].decode("utf-8", "replace") if err.fp else err.reason
                if err.code in (429, 500, 502, 503, 504) and attempt + 1 < self.attempts:
                    log.warning("Cloud Translation HTTP %s; retrying", err.code)
                    self._sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation HTTP {err.code}: {detail}") from None
            except urllib.error.URLError as err:
                if attempt + 1 < self.attempts:
                    self._sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation unreachable: {err.reason}") from None
        raise RuntimeError("Cloud Translation: no attempts made")

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_, s, t) in enumerate(items):
            groups.setdefault((s, t), []).append(i)
        requests: list[tuple[list[int], str, str]] = []
        for (s, t), idx in groups.items():
            for chunk in google_chunks([items[i][0] for i in idx]):
                requests.append(([idx[k] for k in chunk], s, t))
        out: list[str] = [""] * len(items)
        workers = max(1, min(self.settings.max_concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures: dict[Future[list[str]], list[int]] = {
                pool.submit(self._post, [items[i][0] for i in idx], s, t): idx
                for idx, s, t in requests
            }
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in pending:  # after a failure: send nothing more
                fut.cancel()
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            for fut, idx in futures.items():
                for i, translation in zip(idx, fut.result(), strict=True):
                    out[i] = translation
        return out


@TRANSLATORS.register("google", needs_model=False)
def load_google(settings: TranslatorSettings, **_: Any) -> GoogleTranslator:
    """A GoogleTranslator (the key from GOOGLE_API_KEY) with the settings' translator.google
    section; the settings' model does not apply."""
    return GoogleTranslator(settings=GoogleSettings.from_config(settings.google))
