"""The WVS topic table, the prompt templates and the country → language map (resources/wvs/).

- :func:`load_topics` reads ``topics.yaml``: one :class:`Topic` per EVS/WVS variable with the
  project's wording of the topic, its pro and con statements, the answer scale and which answer
  codes are affirmative (see the file's header for every field).
- :func:`select_topics` picks the configured subset (unknown codes fail naming the config key).
- :func:`load_templates` reads ``templates.yaml`` (prompt templates with one ``{topic}`` slot).
- :func:`load_country_languages` reads ``country_languages.csv`` (country, language, name).

Topic keys are the lower-case variable codes of the joint EVS/WVS file (``f118``, ``e069_04``),
the ``question_key`` of every WVS table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.io import read_table, read_yaml
from polyculture.languages import is_language_code

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
MIN_VARIANTS = 5


@dataclass(frozen=True)
class Topic:
    """One survey question used as a topic: its wording, stances and answer coding."""

    key: str
    category: str
    label: str
    pro: str
    con: str
    scale: int
    reversed: bool
    affirmative: frozenset[int]
    valid: frozenset[int]
    variants: tuple[str, ...]

    def is_valid(self, code: int) -> bool:
        """Whether an answer code is a valid (non-missing) answer to this topic."""
        return code in self.valid

    def is_affirmative(self, code: int) -> bool:
        """Whether an answer code takes the pro side of this topic."""
        return code in self.affirmative


@dataclass(frozen=True)
class Template:
    """A hypothetical-survey prompt template with one ``{topic}`` slot."""

    id: str
    text: str

    def fill(self, topic_text: str) -> str:
        """The template with its slot filled."""
        return self.text.replace("{topic}", topic_text)


def default_affirmative(scale: int, reversed_: bool) -> frozenset[int]:
    """Pro codes of a 1..`scale` answer scale: the codes on the pro side of the middle.

    The questionnaire's agreeing end is code 1 on scales of up to 5 points and the highest code
    on longer scales; `reversed_` moves the pro side to the other end. An odd scale's middle code
    is on neither side (a neutral answer: valid, not affirmative).
    """
    if scale < 2:
        raise ValueError(f"an answer scale needs at least 2 points, got {scale}")
    middle = (scale + 1) / 2
    low = [c for c in range(1, scale + 1) if c < middle]
    high = [c for c in range(1, scale + 1) if c > middle]
    low_end_agrees = scale <= 5
    if reversed_:
        low_end_agrees = not low_end_agrees
    return frozenset(low if low_end_agrees else high)


def _int_list(value: Any, where: str, path: object) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise InputError(path, f"{where}: expected a list of integer answer codes, got {value!r}")
    return list(value)


def _text(entry: Mapping[str, Any], field: str, where: str, path: object) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, f"{where}: '{field}' must be a non-empty string")
    return " ".join(value.split())


def parse_topic(entry: Mapping[str, Any], where: str, path: object) -> Topic:
    """Build and check one topic from its YAML mapping (errors name the file and entry)."""
    if not isinstance(entry, Mapping):
        raise InputError(path, f"{where}: expected a mapping, got {type(entry).__name__}")
    known = {"key", "category", "label", "pro", "con", "scale", "reversed", "affirmative"}
    known |= {"also_valid", "exclude", "variants"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise InputError(path, f"{where}: unknown field(s) {', '.join(unknown)}")
    key = entry.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise InputError(path, f"{where}: 'key' must be a lower-case variable code, got {key!r}")
    where = f"{where} ({key})"
    scale = entry.get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
        raise InputError(path, f"{where}: 'scale' must be an integer of at least 2, got {scale!r}")
    reversed_ = entry.get("reversed", False)
    if not isinstance(reversed_, bool):
        raise InputError(path, f"{where}: 'reversed' must be true or false, got {reversed_!r}")
    also_valid = _int_list(entry.get("also_valid"), f"{where} also_valid", path)
    exclude = _int_list(entry.get("exclude"), f"{where} exclude", path)
    if any(c < 0 for c in also_valid):
        raise InputError(
            path, f"{where}: negative codes are always missing; drop them from also_valid"
        )
    valid = (set(range(1, scale + 1)) | set(also_valid)) - set(exclude)
    explicit = entry.get("affirmative")
    if explicit is None:
        affirmative = set(default_affirmative(scale, reversed_))
    else:
        affirmative = set(_int_list(explicit, f"{where} affirmative", path))
        if not affirmative:
            raise InputError(path, f"{where}: 'affirmative' must list at least one code")
    affirmative -= set(exclude)
    outside = sorted(affirmative - valid)
    if outside:
        raise InputError(
            path, f"{where}: affirmative code(s) {outside} are not valid answers (1..{scale})"
        )
    if not affirmative or affirmative == valid:
        raise InputError(
            path, f"{where}: the affirmative codes must be a proper subset of the valid ones"
        )
    variants = entry.get("variants")
    if not isinstance(variants, list) or not all(
        isinstance(v, str) and v.strip() for v in variants
    ):
        raise InputError(path, f"{where}: 'variants' must be a list of non-empty strings")
    variants = [" ".join(v.split()) for v in variants]
    if len(variants) < MIN_VARIANTS:
        raise InputError(
            path, f"{where}: needs at least {MIN_VARIANTS} topic variants, found {len(variants)}"
        )
    if len(set(variants)) != len(variants):
        raise InputError(path, f"{where}: topic variants repeat")
    if any("{" in v or "}" in v or "[" in v for v in variants):
        raise InputError(path, f"{where}: topic variants must not hold braces or placeholders")
    return Topic(
        key=key,
        category=_text(entry, "category", where, path),
        label=_text(entry, "label", where, path),
        pro=_text(entry, "pro", where, path),
        con=_text(entry, "con", where, path),
        scale=scale,
        reversed=reversed_,
        affirmative=frozenset(affirmative),
        valid=frozenset(valid),
        variants=tuple(variants),
    )


def load_topics(path: str | os.PathLike[str]) -> dict[str, Topic]:
    """Read the topic table (YAML with a top-level ``topics`` list), key → topic, file order."""
    doc = read_yaml(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("topics"), list):
        raise InputError(path, "expected a mapping with a 'topics' list")
    topics: dict[str, Topic] = {}
    for i, entry in enumerate(doc["topics"]):
        topic = parse_topic(entry, f"topics[{i}]", path)
        if topic.key in topics:
            raise InputError(path, f"topics[{i}]: key '{topic.key}' appears twice")
        topics[topic.key] = topic
    if not topics:
        raise InputError(path, "the topic table lists no topics")
    return topics


ZERO_CODE_CHOICES = ("valid", "missing")


def with_zero_code(topics: Sequence[Topic], zero_code: str) -> list[Topic]:
    """`topics` with answer code 0 treated as configured (``wvs.zero_code``):

    - ``valid``: as the topic table says (code 0 is valid where a topic lists it in
      ``also_valid``, e.g. e233b's "against democracy", counted as a non-affirmative answer);
    - ``missing``: code 0 is missing for every topic, as in the released processing
      (scripts/process_wvs.py keeps ``score > 0``). For a topic whose code 0 is valid this
      removes its code-0 respondents from the denominator, so its polarity rises by the factor
      1 / (1 − weighted share of code 0); other topics are unchanged."""
    if zero_code not in ZERO_CODE_CHOICES:
        raise ConfigError(
            "wvs.zero_code",
            f"unknown choice '{zero_code}' (expected one of {', '.join(ZERO_CODE_CHOICES)})",
        )
    if zero_code == "valid":
        return list(topics)
    return [replace(t, valid=t.valid - {0}, affirmative=t.affirmative - {0}) for t in topics]


def select_topics(
    topics: Mapping[str, Topic], keys: Sequence[str] | None, config_key: str = "wvs.topics"
) -> list[Topic]:
    """The topics named by `keys` (all when empty/None); unknown codes fail naming `config_key`."""
    if not keys:
        return list(topics.values())
    wanted = [k.lower() for k in keys]
    unknown = [k for k in wanted if k not in topics]
    if unknown:
        raise ConfigError(
            config_key,
            f"unknown topic code(s) {', '.join(unknown)}; the topic table has: {', '.join(topics)}",
        )
    if len(set(wanted)) != len(wanted):
        raise ConfigError(config_key, "topic codes repeat")
    return [topics[k] for k in wanted]


def load_templates(path: str | os.PathLike[str]) -> list[Template]:
    """Read the prompt templates (YAML ``templates: [{id, text}]``), checking each slot."""
    doc = read_yaml(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("templates"), list):
        raise InputError(path, "expected a mapping with a 'templates' list")
    templates: list[Template] = []
    for i, entry in enumerate(doc["templates"]):
        if not isinstance(entry, Mapping):
            raise InputError(path, f"templates[{i}]: expected a mapping with id and text")
        tid, text = entry.get("id"), entry.get("text")
        if not isinstance(tid, str) or not re.match(r"^[A-Za-z0-9_.-]+$", tid):
            raise InputError(path, f"templates[{i}]: 'id' must be a simple name, got {tid!r}")
        if not isinstance(text, str):
            raise InputError(path, f"templates[{i}] ({tid}): 'text' must be a string")
        text = " ".join(text.split())
        if text.count("{topic}") != 1:
            raise InputError(path, f"templates[{i}] ({tid}): must hold '{{topic}}' exactly once")
        rest = text.replace("{topic}", "")
        if "{" in rest or "}" in rest:
            raise InputError(path, f"templates[{i}] ({tid}): braces other than '{{topic}}'")
        templates.append(Template(id=tid, text=text))
    ids = [t.id for t in templates]
    if len(set(ids)) != len(ids):
        raise InputError(path, "template ids repeat")
    if not templates:
        raise InputError(path, "no templates")
    return templates


def load_country_languages(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read the country → language map (columns country, language[, name]); codes are checked."""
    schema = {
        "properties": {"country": {"type": "string"}, "language": {"type": "string"}},
        "required": ["country", "language"],
    }
    df = read_table(path, schema)
    for i, row in enumerate(df.iter_rows(named=True)):
        if not row["country"] or not is_language_code(row["language"] or ""):
            raise InputError(
                path,
                f"row {i + 2}: expected a country code and an ISO 639-1 language, got "
                f"{row['country']!r}, {row['language']!r}",
            )
    dupes = df["country"].filter(df["country"].is_duplicated()).unique().to_list()
    if dupes:
        raise InputError(path, f"countries listed twice: {', '.join(sorted(dupes))}")
    if "name" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("name"))
    return df.select("country", "language", "name")
