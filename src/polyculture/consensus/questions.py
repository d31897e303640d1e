"""Knowledge paragraphs from statements, and bilingual questions from paragraphs (paper §3.1).

Model M turns each statement into a paragraph, then writes K culturally grounded questions per
paragraph with each question's country of origin and primary language, under a JSON schema
(country: an enum of the region list; language: two lower-case letters, then checked against
ISO 639-1). Only non-English questions whose language the translator supports are kept; every
other question is dropped and counted by reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import ConfigError
from polyculture.languages import is_language_code, language_name

PARAGRAPH_SCHEMA = {
    "statement_id": pl.String,
    "country": pl.String,
    "topic": pl.String,
    "statement": pl.String,
    "paragraph": pl.String,
}
QUESTION_SCHEMA = {
    "question_id": pl.String,
    "statement_id": pl.String,
    "country": pl.String,
    "language": pl.String,
    "question_en": pl.String,
}


def fill_template(template: str, key: str, **values: str) -> str:
    """`template` with {name} placeholders filled; fails naming the config key on an unknown one."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            key,
            f"template placeholder error ({exc}); available: {', '.join('{' + v + '}' for v in values)}",
        ) from None


def template_conversations(
    template: str, key: str, values: Iterable[Mapping[str, str]]
) -> list[list[dict[str, str]]]:
    """One single-turn user conversation per set of placeholder values: `template` filled with
    them (`key`: the template's config key, named on a placeholder error)."""
    return [[{"role": "user", "content": fill_template(template, key, **v)}] for v in values]


def paragraph_conversations(statements: pl.DataFrame, template: str) -> list[list[dict[str, str]]]:
    """One user turn per statement asking M for a knowledge paragraph."""
    return template_conversations(
        template,
        "consensus.paragraphs.prompt",
        (
            {"topic": topic, "statement": text, "country": country}
            for topic, text, country in statements.select("topic", "text", "country").iter_rows()
        ),
    )


def collect_paragraphs(
    statements: pl.DataFrame, outputs: Sequence[Sequence[str]]
) -> tuple[pl.DataFrame, DropCounter]:
    """Paragraph table from M's outputs (first sample per statement); blank outputs are dropped."""
    drops = DropCounter(stage="write_paragraphs")
    drops.seen(statements.height)
    rows = []
    for (sid, country, topic, text), out in zip(
        statements.select("statement_id", "country", "topic", "text").iter_rows(),
        outputs,
        strict=True,
    ):
        paragraph = out[0].strip() if out else ""
        if not paragraph:
            drops.drop("empty_paragraph")
            continue
        rows.append(
            {
                "statement_id": sid,
                "country": country,
                "topic": topic,
                "statement": text,
                "paragraph": paragraph,
            }
        )
    return pl.DataFrame(rows, schema=PARAGRAPH_SCHEMA), drops


def question_json_schema(k: int, regions: Sequence[str], max_chars: int) -> dict[str, Any]:
    """JSON schema of M's answer: exactly k questions, each with country (enum) and language."""
    if k < 1:
        raise ConfigError(
            "consensus.questions.k", f"expected at least 1 question per paragraph, got {k}"
        )
    if not regions:
        raise ConfigError("consensus.regions", "the region list is empty")
    return {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "minItems": k,
                "maxItems": k,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string", "minLength": 1, "maxLength": max_chars},
                        "country": {"enum": list(regions)},
                        "language": {"type": "string", "pattern": "^[a-z]{2}$"},
                    },
                    "required": ["question", "country", "language"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["questions"],
        "additionalProperties": False,
    }


def question_conversations(
    paragraphs: pl.DataFrame, template: str, k: int
) -> list[list[dict[str, str]]]:
    """One user turn per paragraph asking M for k questions with country and language."""
    return template_conversations(
        template,
        "consensus.questions.prompt",
        (
            {"k": str(k), "topic": topic, "paragraph": paragraph, "country": country}
            for topic, paragraph, country in paragraphs.select(
                "topic", "paragraph", "country"
            ).iter_rows()
        ),
    )


def question_drop_reason(
    item: Mapping[str, Any],
    *,
    regions: set[str],
    supports: Callable[[str], bool],
    seen: set[str],
) -> str | None:
    """Why a generated question cannot be used, or None when it is kept."""
    text = str(item.get("question", "")).strip()
    lang = str(item.get("language", "")).strip()
    if not text:
        return "empty_question"
    if item.get("country") not in regions:
        return "unknown_country"
    if not is_language_code(lang):
        return "language_not_iso"
    if lang == "en":
        return "english_question"
    if not supports(lang):
        return "unsupported_language"
    if text.casefold() in seen:
        return "duplicate_question"
    return None


def collect_questions(
    paragraphs: pl.DataFrame,
    outputs: Sequence[Sequence[Mapping[str, Any] | None]],
    *,
    k: int,
    regions: Sequence[str],
    supports: Callable[[str], bool],
) -> tuple[pl.DataFrame, DropCounter]:
    """Question table from M's JSON outputs; every one of the k questions per paragraph is
    counted, and unusable ones are dropped by reason (an unparsable answer drops all k)."""
    drops = DropCounter(stage="generate_questions")
    region_set = set(regions)
    rows = []
    for sid, out in zip(paragraphs["statement_id"].to_list(), outputs, strict=True):
        drops.seen(k)
        obj = out[0] if out else None
        items = obj.get("questions") if isinstance(obj, Mapping) else None
        if not isinstance(items, list):
            drops.drop("unparsable_json", k)
            continue
        if len(items) < k:
            drops.drop("missing_question", k - len(items))
        seen: set[str] = set()
        for j, item in enumerate(items[:k]):
            if not isinstance(item, Mapping):
                drops.drop("unparsable_json")
                continue
            reason = question_drop_reason(item, regions=region_set, supports=supports, seen=seen)
            if reason:
                drops.drop(reason)
                continue
            text = str(item["question"]).strip()
            seen.add(text.casefold())
            rows.append(
                {
                    "question_id": f"{sid}-q{j}",
                    "statement_id": sid,
                    "country": item["country"],
                    "language": str(item["language"]).strip(),
                    "question_en": text,
                }
            )
    return pl.DataFrame(rows, schema=QUESTION_SCHEMA), drops


def collect_pairs(
    questions: pl.DataFrame, translations: Sequence[str]
) -> tuple[pl.DataFrame, DropCounter]:
    """Bilingual pairs (question_en, question_local); blank translations and translations equal
    to the English question (nothing was translated) are dropped and counted."""
    drops = DropCounter(stage="translate_questions")
    drops.seen(questions.height)
    keep: list[bool] = []
    local: list[str] = []
    for en, tr in zip(questions["question_en"].to_list(), translations, strict=True):
        t = (tr or "").strip()
        if not t:
            drops.drop("empty_translation")
            keep.append(False)
        elif t == en.strip():
            drops.drop("translation_identical_to_source")
            keep.append(False)
        else:
            keep.append(True)
        local.append(t)
    out = questions.with_columns(pl.Series("question_local", local, dtype=pl.String))
    return out.filter(pl.Series(keep, dtype=pl.Boolean)), drops


def language_label(code: str) -> str:
    """Short English name of a language code for prompts: the ISO table's first name without
    qualifiers ('el' → 'Greek' rather than 'Modern Greek (1453-)', 'es' → 'Spanish')."""
    name = language_name(code).split(";")[0]
    name = re.sub(r"\s*\(.*?\)", "", name).strip()
    return name.removeprefix("Modern ").strip()


def region_list(configured: Sequence[str], statement_countries: Sequence[str]) -> list[str]:
    """Countries offered to M as a question's country of origin: the configured list
    (canonicalised; an unknown name is a config error), or, when it is empty, the 16 BLEnD
    regions plus every country of the statements. Sorted, without duplicates."""
    from polyculture.consensus.countries import blend_regions, canonical_country

    if configured:
        out = []
        for i, name in enumerate(configured):
            canonical = canonical_country(name)
            if canonical is None:
                raise ConfigError(
                    f"consensus.regions[{i}]", f"{name!r} is not a known country or BLEnD region"
                )
            out.append(canonical)
        return sorted(set(out))
    return sorted(set(blend_regions()) | set(statement_countries))
