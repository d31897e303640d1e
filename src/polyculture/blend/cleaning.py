"""BLEnD response cleaning and lemmatization: the two rule sets' cleaning, the lemmatizer of
each language and the tokens an answer is matched on."""

from __future__ import annotations

import logging
import re
import string
import unicodedata
from functools import cache, lru_cache
from typing import Any

log = logging.getLogger("polyculture.blend")


# Rule sets of the scorer (module docstring): the project's fixes, or the official code's behaviour.
SCORER_RULES = ("polyculture", "official")


# Languages that simplemma 2.x ships dictionaries for.
# fmt: off
SIMPLEMMA_LANGUAGES = frozenset((
    "ar", "ast", "bg", "ca", "cs", "cy", "da", "de", "el", "en", "enm", "eo", "es", "et", "fa",
    "fi", "fr", "ga", "gd", "gl", "grc", "gv", "hbs", "he", "hi", "hu", "hy", "id", "is", "it",
    "ka", "la", "lb", "lt", "lv", "mk", "ml", "ms", "nb", "nl", "nn", "pl", "pt", "ro", "ru",
    "se", "sk", "sl", "sq", "sv", "sw", "tl", "tr", "uk",
))
# fmt: on


_FULL_WIDTH = str.maketrans({"：": ":", "、": ",", "，": ",", "。": "."})


_LABEL = re.compile(r"^(\w+):\s")


def normalize_text(text: str) -> str:
    """Full-width punctuation to ASCII, lowercase, surrounding whitespace stripped."""
    return text.translate(_FULL_WIDTH).lower().strip()


def clean_response(response: str | None, prompt: str = "") -> str:
    """A model response as the scorer sees it: prompt echo removed, punctuation mapped,
    lowercased, a leading `label:` removed when the label's word occurs in the prompt,
    surrounding whitespace and periods stripped. None (no response) gives ''."""
    if response is None:
        return ""
    text = response.replace(prompt, "") if prompt else response
    text = normalize_text(text)
    prompt_norm = normalize_text(prompt)
    m = _LABEL.match(text)
    if m and m.group(1) in prompt_norm:
        text = text[m.end() :]
    return text.strip().strip(".").strip()


def clean_response_official(response: str | None, prompt: str = "") -> str:
    """The official scorer's cleaning (``delete_prompt_from_answer`` then ``.strip('.').lower()``):
    like :func:`clean_response` but every occurrence of the removed label's text goes, and
    whitespace inside the surrounding periods stays."""
    if response is None:
        return ""
    text = response.replace(prompt, "").translate(_FULL_WIDTH).lower()
    prompt_norm = prompt.translate(_FULL_WIDTH).lower()
    found = re.findall(r"^(\w+:)\s", text)
    extracted = ""
    for label in found:
        if len(label) > len(extracted) and label.replace(":", "") in prompt_norm:
            extracted = label
    text = text.replace(extracted, "").strip() if found else text.strip()
    return text.strip(".").lower()


def check_rules(rules: str) -> str:
    """`rules` if it names a rule set of the scorer, else a ValueError naming the choices."""
    if rules not in SCORER_RULES:
        raise ValueError(f"scorer rules {rules!r}: expected one of {', '.join(SCORER_RULES)}")
    return rules


def analyzer_name(language: str) -> str:
    """Which tokenizer/lemmatizer a language gets: hazm, nlp_id, simplemma, jieba, kiwipiepy or
    fallback."""
    if language == "zh":
        return "jieba"
    if language == "fa" and _hazm() is not None:
        return "hazm"
    if language == "id" and _nlp_id() is not None:
        return "nlp_id"
    if language == "ko":
        return "kiwipiepy" if _kiwi() is not None else "fallback"
    if language in SIMPLEMMA_LANGUAGES:
        return "simplemma"
    return "fallback"


@cache
def _kiwi() -> Any:
    try:
        from kiwipiepy import Kiwi
    except ImportError:
        log.warning(
            "kiwipiepy is not installed: Korean falls back to whitespace/punctuation tokens"
        )
        return None
    return Kiwi()


@cache
def _hazm() -> Any:
    """hazm's Lemmatizer (the official scorer's Persian lemmatizer), or None when not installed."""
    try:
        from hazm import Lemmatizer
    except ImportError as exc:
        log.warning(
            "hazm is not usable (%s): Persian falls back to simplemma; install it with "
            "`pip install --no-deps hazm==0.10.0` (see polyculture.blend)",
            exc,
        )
        return None
    return Lemmatizer()


@cache
def _nlp_id() -> Any:
    """nlp_id's Lemmatizer (the official scorer's Indonesian lemmatizer), or None."""
    try:
        from nlp_id.lemmatizer import Lemmatizer
    except ImportError as exc:
        log.warning(
            "nlp_id is not usable (%s): Indonesian falls back to simplemma; install it with "
            "`pip install --no-deps nlp_id==0.1.23.0` (see polyculture.blend)",
            exc,
        )
        return None
    return Lemmatizer()


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _is_punct_or_symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def fallback_tokens(text: str) -> list[str]:
    """Split on whitespace and on punctuation/symbol characters (marks stay inside words)."""
    tokens, current = [], []
    for ch in text:
        if ch.isspace() or _is_punct_or_symbol(ch):
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


_KO_PREDICATES = {"VV", "VA", "VX", "VCP", "VCN", "XSV", "XSA"}


_KO_KEEP_SYMBOLS = {"SL", "SH", "SN"}  # foreign letters, Hanja, numbers


def _korean_tokens(text: str) -> list[str]:
    kiwi = _kiwi()
    if kiwi is None:
        return fallback_tokens(text)
    out = []
    for tok in kiwi.tokenize(text):
        tag = tok.tag.split("-")[0]
        if tag.startswith(("J", "E")) or (tag.startswith("S") and tag not in _KO_KEEP_SYMBOLS):
            continue
        out.append(tok.form + "다" if tag in _KO_PREDICATES else tok.form)
    return out


def _raw_tokens(text: str, language: str, rules: str = "polyculture") -> list[str]:
    """Tokens of the language's analyzer, before case, accent and punctuation handling.
    Persian: hazm lemmas of the whitespace-separated terms (official) or of the terms split
    on punctuation too (polyculture); Indonesian: nlp_id's lemmatized text split on spaces."""
    name = analyzer_name(language)
    if name == "hazm":
        terms = text.split() if rules == "official" else fallback_tokens(text)
        return [_hazm().lemmatize(t) for t in terms]
    if name == "nlp_id":
        return _nlp_id().lemmatize(text).split()
    if name == "simplemma":
        import simplemma

        return [simplemma.lemmatize(t, lang=language) for t in simplemma.simple_tokenizer(text)]
    if name == "jieba":
        return [t for t in _jieba().lcut(text) if t.strip()]
    if name == "kiwipiepy":
        return _korean_tokens(text)
    return fallback_tokens(text)


def strip_accents(text: str) -> str:
    """Remove combining diacritics (U+0300–U+036F) after canonical decomposition; recompose."""
    decomposed = unicodedata.normalize("NFD", text)
    kept = "".join(ch for ch in decomposed if not 0x300 <= ord(ch) <= 0x36F)
    return unicodedata.normalize("NFC", kept)


@lru_cache(maxsize=262_144)
def lemma_tokens(text: str, language: str) -> tuple[str, ...]:
    """Lemmatized tokens of `text` in `language`: lowercased, accents stripped, punctuation
    and symbol tokens dropped (see the module docstring for the analyzer per language)."""
    out = []
    for tok in _raw_tokens(text, language):
        norm = strip_accents(tok.lower()).strip()
        if norm and not all(_is_punct_or_symbol(ch) for ch in norm):
            out.append(norm)
    return tuple(out)


_ACUTE = {ord("\N{COMBINING ACUTE ACCENT}"): None}


@lru_cache(maxsize=262_144)
def official_tokens(text: str, language: str) -> tuple[str, ...]:
    """Tokens as the official ``lemma_check`` compares them: the analyzer's tokens of the text as
    given, without tokens that are '' or a substring of ASCII ``string.punctuation``, then NFD,
    the combining acute accent removed, lowercased."""
    return tuple(
        unicodedata.normalize("NFD", t).translate(_ACUTE).lower()
        for t in _raw_tokens(text, language, "official")
        if t not in string.punctuation and t != ""
    )
