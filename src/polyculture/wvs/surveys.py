"""Parsing hypothetical-survey responses into their numbered summaries (stage 5).

The prompt asks for a numbered list ("1. <summary> 2. <summary> ..."). :func:`split_numbered`
finds the list in a response:

- An item starts on a line whose first characters are optional Markdown decoration (``#``,
  ``>``, ``*``, ``_``, ``-``, spaces), then a number in ASCII or full-width digits, then one of
  ``.`` ``)`` ``:`` ``．`` ``）`` ``：`` — so ``1.``, ``1)``, ``1:``, ``**1.**``, ``**1. Name:**``,
  ``## 1.`` and ``１．`` all start an item; ``## 10 Interviews`` (no punctuation) does not.
- Items must be numbered 1, 2, 3, ... in order: a line whose number is not the next expected one
  is ordinary text of the current item (this keeps nested lists and years inside an item).
- Text before item 1 is a preamble and is discarded. An item runs to the next item; the last
  item keeps at most as many paragraphs as the longest earlier item, so a closing remark after
  the list ("These summaries are fictional...") is cut while multi-paragraph items are kept.
- Markdown emphasis and surrounding quotes are stripped; an item left empty (a truncated
  ``**``) is not an item.
- Bullet lists ("- ", "* ", "• ") are not the requested format: with ``accept_bullets`` false
  (the default) they do not count; with it true, a response without a numbered list is split
  at its bullets instead.

:func:`parse_responses` applies this to a table of responses and drops (and counts, per
model × language) responses that are empty, have fewer than ``min_items`` items (``no_list``),
whose language cannot be identified (``language_unknown``) or is not the prompt's
(``wrong_language``). Language identification uses lingua, restricted to a candidate set (the
configured languages plus a few likely confusions) for speed and accuracy, on the text of the
items only.

Table written by rule ``wvs_parse`` (``{RESULTS}/wvs/parsed/{model}.parquet``), one row per
summary: model, family, language, prompt_id, template_id, topic_variant_id, question_key,
response_id, sample, detected_language, n_items, item_index (1-based), item_text.
Drops: ``{RESULTS}/wvs/drops/parse/{model}.parquet`` (stage, group = "{model}/{language}",
reason, dropped, total, model, language).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import polars as pl

from polyculture.drops import DROP_SCHEMA, DropCounter
from polyculture.errors import ConfigError

_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
_ITEM = re.compile(
    r"^[ \t]*(?:[#>]+[ \t]*)?(?:[*_]{1,3}[ \t]*)?"
    r"(?P<num>[0-9０-９]{1,3})[ \t]*(?:[*_]{1,3})?[ \t]*[.)．）:：](?!\d)[ \t]*(?P<rest>.*)$"
)
_BULLET = re.compile(r"^[ \t]*(?:[-*•·‣▪–])[ \t]+(?P<rest>\S.*)$")
_DECORATION = " \t#>`"
_QUOTES = "\"'“”„«»"

# the columns (and their types) that identify one sampled survey response, in table order
RESPONSE_KEY_SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "prompt_id": pl.String,
    "template_id": pl.String,
    "topic_variant_id": pl.String,
    "question_key": pl.String,
    "response_id": pl.String,
    "sample": pl.Int64,
}
PARSED_SCHEMA = {
    **RESPONSE_KEY_SCHEMA,
    "detected_language": pl.String,
    "n_items": pl.Int64,
    "item_index": pl.Int64,
    "item_text": pl.String,
}
PARSED_COLUMNS = tuple(PARSED_SCHEMA)
RESPONSE_COLUMNS = (*RESPONSE_KEY_SCHEMA, "response")


def _unquote(line: str) -> str:
    """A line without one pair of quotes that wraps all of it."""
    if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        return line[1:-1].strip()
    return line


def clean_item(text: str) -> str:
    """An item's text without Markdown emphasis, wrapping quotes or extra whitespace."""
    text = text.replace("*", "").replace("__", "")
    lines = [_unquote(line.strip(_DECORATION)) for line in text.splitlines()]
    return re.sub(r"[ \t]+", " ", "\n".join(line for line in lines if line))


def _paragraphs(lines: Sequence[str]) -> list[list[str]]:
    paras: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paras[-1].append(line)
        elif paras[-1]:
            paras.append([])
    return [p for p in paras if p]


def _assemble(starts: list[tuple[int, str]], lines: Sequence[str]) -> list[str]:
    """Item texts from (line number, first-line text) starts; the last item is trimmed."""
    bodies: list[list[str]] = []
    for k, (lineno, first) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        bodies.append([first, *lines[lineno + 1 : end]])
    if bodies:
        longest = max((len(_paragraphs(b)) for b in bodies[:-1]), default=1)
        last = _paragraphs(bodies[-1])
        bodies[-1] = [line for para in last[: max(longest, 1)] for line in para]
    return [clean_item("\n".join(b)) for b in bodies]


def numbered_starts(lines: Sequence[str]) -> list[tuple[int, str]]:
    """Lines that open items 1, 2, 3, ... in order, with the text after each number."""
    starts: list[tuple[int, str]] = []
    expected = 1
    for i, line in enumerate(lines):
        m = _ITEM.match(line)
        if m and int(m.group("num").translate(_FULLWIDTH)) == expected:
            starts.append((i, m.group("rest")))
            expected += 1
    return starts


def split_numbered(text: str, *, accept_bullets: bool = False) -> list[str]:
    """The summaries of a numbered-list response, in order (empty when there is no list)."""
    text = unicodedata.normalize("NFC", text or "").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    starts = numbered_starts(lines)
    if not starts and accept_bullets:
        starts = [
            (i, m.group("rest")) for i, line in enumerate(lines) if (m := _BULLET.match(line))
        ]
    items = _assemble(starts, lines)
    return [item for item in items if item]


@dataclass(frozen=True)
class LanguageIdentifier:
    """lingua restricted to a candidate set of ISO 639-1 languages."""

    candidates: tuple[str, ...]
    minimum_relative_distance: float = 0.0

    def identify(self, text: str) -> str | None:
        """ISO 639-1 code of the text's language, or None when lingua cannot decide."""
        return self.identify_many([text])[0]

    def identify_many(self, texts: Sequence[str]) -> list[str | None]:
        """Languages of many texts (lingua's parallel detection)."""
        detector = _detector(self.candidates, self.minimum_relative_distance)
        found = detector.detect_languages_in_parallel_of(list(texts))
        return [lang.iso_code_639_1.name.lower() if lang is not None else None for lang in found]


def lingua_supported(code: str) -> bool:
    """Whether lingua has a model for an ISO 639-1 language."""
    from lingua import IsoCode639_1

    return hasattr(IsoCode639_1, code.upper())


@cache
def _detector(candidates: tuple[str, ...], minimum_relative_distance: float):  # type: ignore[no-untyped-def]
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    unsupported = [c for c in candidates if not lingua_supported(c)]
    if unsupported:
        raise ConfigError(
            "wvs.parse.extra_languages",
            f"language identification (lingua) has no model for {', '.join(unsupported)}",
        )
    if len(candidates) < 2:
        raise ConfigError(
            "wvs.parse.extra_languages",
            "language identification needs at least two candidate languages",
        )
    codes = [getattr(IsoCode639_1, c.upper()) for c in candidates]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    if minimum_relative_distance:
        builder = builder.with_minimum_relative_distance(minimum_relative_distance)
    return builder.build()


def candidate_languages(languages: Iterable[str], extra: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated candidate set for language identification."""
    return tuple(sorted(set(languages) | set(extra)))


def parse_responses(
    responses: pl.DataFrame,
    *,
    min_items: int,
    identifier: LanguageIdentifier | None,
    accept_bullets: bool = False,
) -> tuple[pl.DataFrame, dict[tuple[str, str], DropCounter]]:
    """Split responses into summaries, dropping unusable responses (counted per model × language).

    `identifier` None switches the language check off (every response keeps its prompt's
    language as detected_language). Returns the parsed items (columns ``PARSED_COLUMNS``)
    and a drop counter per (model, language).
    """
    if min_items < 1:
        raise ConfigError("wvs.parse.min_items", "must be at least 1")
    counters: dict[tuple[str, str], DropCounter] = {}
    kept: list[tuple[dict[str, object], list[str]]] = []
    for row in responses.sort("model", "language", "response_id").iter_rows(named=True):
        group = (row["model"], row["language"])
        counter = counters.setdefault(group, DropCounter("parse", f"{group[0]}/{group[1]}"))
        counter.seen()
        text = row["response"] or ""
        if not text.strip():
            counter.drop("empty")
            continue
        items = split_numbered(text, accept_bullets=accept_bullets)
        if len(items) < min_items:
            counter.drop("no_list")
            continue
        kept.append((row, items))
    detected: list[str | None]
    if identifier is None:
        detected = [row["language"] for row, _ in kept]
    else:
        detected = identifier.identify_many(["\n".join(items) for _, items in kept])
    out: list[dict[str, object]] = []
    for (row, items), lang in zip(kept, detected, strict=True):
        counter = counters[(row["model"], row["language"])]
        if lang is None:
            counter.drop("language_unknown")
            continue
        if lang != row["language"]:
            counter.drop("wrong_language")
            continue
        for k, item in enumerate(items, start=1):
            out.append(
                {
                    **{c: row[c] for c in RESPONSE_KEY_SCHEMA},
                    "detected_language": lang,
                    "n_items": len(items),
                    "item_index": k,
                    "item_text": item,
                }
            )
    return pl.DataFrame(out, schema=PARSED_SCHEMA), counters


def drops_frame(counters: dict[tuple[str, str], DropCounter]) -> pl.DataFrame:
    """Drop counts of every (model, language) group, with model and language columns."""
    frames = [
        c.to_frame().with_columns(pl.lit(model).alias("model"), pl.lit(lang).alias("language"))
        for (model, lang), c in sorted(counters.items())
    ]
    if not frames:
        return pl.DataFrame(schema={**DROP_SCHEMA, "model": pl.String, "language": pl.String})
    return pl.concat(frames, how="vertical")
