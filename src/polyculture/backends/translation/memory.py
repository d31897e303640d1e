"""Translation memory: a table of segment pairs per language pair, looked up instead of a model.

The table (CSV or TSV, by suffix) has the columns `source_language`, `target_language`,
`source` and `target`: one row per segment pair, ISO 639-1 codes. A row serves its own direction
and the reverse one (a memory of English↔Greek pairs translates both ways), unless the reverse
key is claimed by another row (then only the rows written in that direction serve it).

Lookup: the exact segment first, then its normal form (Unicode NFC, case-folded, whitespace
collapsed, trailing punctuation stripped). A segment the memory lacks is never passed through:
it comes back as "" (which every translating rule drops and counts as a failed translation) and
is counted in `MemoryTranslator.missing`. Useful beyond the demo for users with pre-translated
questions or glossaries."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings
from polyculture.errors import ConfigError, InputError
from polyculture.languages import is_language_code

log = logging.getLogger(__name__)

COLUMNS = ("source_language", "target_language", "source", "target")
# trailing sentence punctuation, Latin and Greek (";" is the Greek question mark, "·" its
# semicolon), CJK full stops and the ellipsis: our choice, the marks a question or answer ends on
TRAILING_PUNCT = ".!?;:,·…。！？;"
_SPACE = re.compile(r"\s+")

Key = tuple[str, str, str]


def normalise(text: str) -> str:
    """The segment's normal form: Unicode NFC, case-folded, runs of whitespace as one space,
    outer whitespace and trailing punctuation stripped."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = _SPACE.sub(" ", text).strip()
    return text.rstrip(TRAILING_PUNCT + " ")


@dataclass(frozen=True)
class Memory:
    """Segment pairs indexed by (source language, target language, segment): exact and normal."""

    exact: dict[Key, str]
    normal: dict[Key, str]

    def lookup(self, text: str, source: str, target: str) -> str | None:
        """The stored translation of `text`, exact match first, then normalised; None if absent."""
        hit = self.exact.get((source, target, text))
        if hit is not None:
            return hit
        return self.normal.get((source, target, normalise(text)))

    def pairs(self) -> set[tuple[str, str]]:
        """The (source, target) language pairs this memory translates."""
        return {(s, t) for s, t, _ in self.exact}


def _add(
    index: dict[Key, str],
    origin: dict[Key, int],
    key: Key,
    value: str,
    row: int,
    what: str,
    origin_name: str,
) -> None:
    if key in index and index[key] != value:
        raise InputError(
            origin_name,
            f"row {row}: {what} segment {key[2]!r} ({key[0]}→{key[1]}) already translates as "
            f"{index[key]!r} (row {origin[key]}), here as {value!r}",
        )
    index[key] = value
    origin[key] = row


def _with_reverse(
    forward: dict[Key, str], reverse: list[tuple[int, Key, str]], name: str
) -> dict[Key, str]:
    """`forward` plus the reverse keys that no forward row decides and exactly one row claims."""
    claims: dict[Key, set[str]] = {}
    for _, key, src in reverse:
        claims.setdefault(key, set()).add(src)
    index = dict(forward)
    for i, key, src in reverse:
        if key in forward:
            continue  # a row written in this direction decides
        if len(claims[key]) > 1:
            raise InputError(
                name,
                f"row {i}: target segment {key[2]!r} ({key[1]}→{key[0]}) is the translation of "
                f"{len(claims[key])} different segments, so it cannot be translated back; "
                f"add a row from '{key[0]}' to '{key[1]}' that says which",
            )
        index[key] = src
    return index


def build_memory(rows: Iterable[dict[str, str]], name: str = "translation memory") -> Memory:
    """A memory from segment-pair rows (dicts with COLUMNS; rows numbered from 1 in errors).

    A key in the rows' own direction that two rows translate differently is an error naming both
    rows; a reverse key that two rows claim is left to the rows written in that direction, or is
    an error when none is."""
    fwd_exact: dict[Key, str] = {}
    fwd_normal: dict[Key, str] = {}
    rev: list[tuple[int, Key, Key, str]] = []
    origin_e: dict[Key, int] = {}
    origin_n: dict[Key, int] = {}
    for i, row in enumerate(rows, start=1):
        vals = {}
        for col in COLUMNS:
            v = row.get(col)
            if not isinstance(v, str) or not v.strip():
                raise InputError(name, f"row {i}, column {col}: expected a non-empty string")
            vals[col] = v.strip() if col.endswith("language") else v
        s, t = vals["source_language"], vals["target_language"]
        for col, code in (("source_language", s), ("target_language", t)):
            if not is_language_code(code):
                raise InputError(name, f"row {i}, column {col}: {code!r} is not an ISO 639-1 code")
        if s == t:
            raise InputError(name, f"row {i}: source and target language are both '{s}'")
        src, tgt = vals["source"], vals["target"]
        _add(fwd_exact, origin_e, (s, t, src), tgt, i, "source", name)
        _add(fwd_normal, origin_n, (s, t, normalise(src)), tgt, i, "normalised source", name)
        rev.append((i, (t, s, tgt), (t, s, normalise(tgt)), src))
    exact = _with_reverse(fwd_exact, [(i, ke, src) for i, ke, _, src in rev], name)
    normal = _with_reverse(fwd_normal, [(i, kn, src) for i, _, kn, src in rev], name)
    return Memory(exact, normal)


def read_memory(path: str | Path) -> Memory:
    """The memory in a CSV or TSV file (by suffix) with COLUMNS; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("translator.path", f"{path}: no such translation memory file")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pl.read_csv(path, separator=sep, infer_schema=False, quote_char='"')
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(path, f"not a readable CSV/TSV table ({err})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}",
        )
    return build_memory(df.select(COLUMNS).to_dicts(), name=str(path))


@dataclass
class MissCount:
    """Segments the memory lacked, per (source, target) language pair."""

    by_pair: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_pair.values())


class MemoryTranslator(Translator):
    """Looks segments up in a translation memory; a segment it lacks becomes "" and is counted
    (never passed through untranslated)."""

    kind = "memory"

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.missing = MissCount()
        self._languages = {lang for pair in memory.pairs() for lang in pair}

    @classmethod
    def from_path(cls, path: str | Path) -> MemoryTranslator:
        return cls(read_memory(path))

    def supports(self, lang: str) -> bool:
        return lang in self._languages

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        out: list[str] = []
        for text, s, t in items:
            hit = self.memory.lookup(text, s, t)
            if hit is None:
                self.missing.by_pair[(s, t)] = self.missing.by_pair.get((s, t), 0) + 1
                log.warning("translation memory: no entry for %r (%s→%s); dropped", text, s, t)
                hit = ""
            out.append(hit)
        return out


@TRANSLATORS.register("memory", needs_model=False, needs_path=True)
def load_memory_translator(settings: TranslatorSettings, **_: object) -> MemoryTranslator:
    """The `memory` translator: the segment-pair table at `translator.path`."""
    return MemoryTranslator.from_path(str(settings.path))
