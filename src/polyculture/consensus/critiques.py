"""Ground truth into the weaker language, and M's critique of its own weak-language answer.

Following paper §3.2: g* is translated into the weaker language λ- with the configured translator
(the paper: Google Translate, every g*; optionally skipped where a detector finds g* already in
λ-, a project option), one weak-side answer m_k is sampled (seeded per question), and M writes a critique c_k
comparing m_k with the translated ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import polars as pl

from polyculture.consensus.ground_truth import question_rng
from polyculture.consensus.questions import language_label, template_conversations
from polyculture.drops import DropCounter
from polyculture.errors import InputError

WEAK_ANSWER_STREAM = 1


@cache
def _detector(codes: tuple[str, ...]):  # noqa: ANN202 (lingua type)
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in codes]
    return LanguageDetectorBuilder.from_languages(*langs).build()


def lingua_supports(code: str) -> bool:
    """Whether the lingua language detector knows ISO 639-1 code `code`."""
    from lingua import IsoCode639_1

    try:
        IsoCode639_1.from_str(code)
    except ValueError:
        return False
    return True


def already_in_language(text: str, target: str, other: str, min_confidence: float) -> bool:
    """Whether `text` is in language `target` rather than `other`, by a detector restricted to
    the two; False where the detector does not know either language or is not confident."""
    if target == other:
        return True
    if not text.strip() or not (lingua_supports(target) and lingua_supports(other)):
        return False
    from lingua import IsoCode639_1, Language

    detector = _detector(tuple(sorted((target, other))))
    want = Language.from_iso_code_639_1(IsoCode639_1.from_str(target))
    return detector.compute_language_confidence(text, want) >= min_confidence


def translation_plan(
    ground_truth: pl.DataFrame, min_confidence: float, *, skip_same_language: bool = True
) -> list[bool]:
    """Per row: whether g* is translated from the strong into the weak language: always where
    `skip_same_language` is False (the paper), else unless it already is in the weak language."""
    if not skip_same_language:
        return [True] * ground_truth.height
    return [
        not already_in_language(text, weak, strong, min_confidence)
        for text, strong, weak in ground_truth.select(
            "gt_text", "strong_language", "weak_language"
        ).iter_rows()
    ]


def translate_ground_truth(
    ground_truth: pl.DataFrame,
    translate: Callable[[list[str], list[str], list[str]], list[str]],
    *,
    min_confidence: float,
    skip_same_language: bool = False,
) -> tuple[pl.DataFrame, DropCounter]:
    """Add gt_weak (g* in the weak language) and gt_translated; blank translations are dropped.

    `translate(texts, sources, targets)` is called once with the rows that need translating:
    every row (the paper) or, with `skip_same_language`, those a detector does not find at
    least `min_confidence` in the weak language already."""
    drops = DropCounter(stage="translate_ground_truth")
    drops.seen(ground_truth.height)
    plan = translation_plan(ground_truth, min_confidence, skip_same_language=skip_same_language)
    idx = [i for i, need in enumerate(plan) if need]
    texts = ground_truth["gt_text"].to_list()
    gt_weak = list(texts)
    if idx:
        out = translate(
            [texts[i] for i in idx],
            [ground_truth["strong_language"][i] for i in idx],
            [ground_truth["weak_language"][i] for i in idx],
        )
        if len(out) != len(idx):
            raise InputError("translator", f"returned {len(out)} translations for {len(idx)} texts")
        for i, t in zip(idx, out, strict=True):
            gt_weak[i] = (t or "").strip()
    keep = []
    for value in gt_weak:
        if value.strip():
            keep.append(True)
        else:
            drops.drop("empty_translation")
            keep.append(False)
    table = ground_truth.with_columns(
        pl.Series("gt_weak", gt_weak, dtype=pl.String),
        pl.Series("gt_translated", plan, dtype=pl.Boolean),
    )
    return table.filter(pl.Series(keep, dtype=pl.Boolean)), drops


def pick_weak_answers(
    ground_truth: pl.DataFrame, samples: pl.DataFrame, responses: pl.DataFrame, seed: int
) -> pl.DataFrame:
    """Add weak_sample / weak_answer: m_k drawn uniformly (seeded per question) from the weak
    side's usable samples (those that were embedded, i.e. non-empty)."""
    usable = {
        (q, s): sorted(v)
        for q, s, v in samples.group_by("question_id", "side").agg(pl.col("sample")).iter_rows()
    }
    text = {
        (q, s, i): t
        for q, s, i, t in responses.select("question_id", "side", "sample", "text").iter_rows()
    }
    picks, answers = [], []
    for q, weak in ground_truth.select("question_id", "weak_side").iter_rows():
        choices = usable.get((q, weak), [])
        if not choices:
            raise InputError(
                "sample similarity", f"question {q!r} has no usable sample on side {weak!r}"
            )
        rng = question_rng(seed, q, WEAK_ANSWER_STREAM)
        k = int(choices[int(rng.integers(len(choices)))])
        if (q, weak, k) not in text:
            raise InputError("responses", f"question {q!r}: no response text for {weak} sample {k}")
        picks.append(k)
        answers.append(text[(q, weak, k)])
    return ground_truth.with_columns(
        pl.Series("weak_sample", picks, dtype=pl.Int64),
        pl.Series("weak_answer", answers, dtype=pl.String),
    )


def critique_conversations(table: pl.DataFrame, template: str) -> list[list[dict[str, str]]]:
    """One user turn per question asking M to critique m_k against the translated g*."""
    return template_conversations(
        template,
        "consensus.critique.prompt",
        (
            {
                "question": question,
                "answer": answer,
                "reference": reference,
                "language": language_label(lang),
            }
            for question, answer, reference, lang in table.select(
                "question_weak", "weak_answer", "gt_weak", "weak_language"
            ).iter_rows()
        ),
    )


def collect_critiques(
    table: pl.DataFrame, outputs: Sequence[Sequence[str]]
) -> tuple[pl.DataFrame, DropCounter]:
    """Add the critique column; blank critiques are dropped and counted."""
    drops = DropCounter(stage="critique")
    drops.seen(table.height)
    critiques = [(o[0] if o else "").strip() for o in outputs]
    if len(critiques) != table.height:
        raise InputError(
            "generator", f"returned {len(critiques)} critiques for {table.height} prompts"
        )
    keep = [bool(c) for c in critiques]
    n_empty = keep.count(False)
    if n_empty:
        drops.drop("empty_critique", n_empty)
    out = table.with_columns(pl.Series("critique", critiques, dtype=pl.String))
    return out.filter(pl.Series(keep, dtype=pl.Boolean)), drops


# --------------------------------------------------------------------------- CulFiT's critique
#
# CulFiT (Feng et al. 2025; MMadmax/CulFiT src/answer_extract.py, src/critique_generation.py)
# critiques in steps: the reference answer's knowledge points (atomic, self-contained sentences,
# JSON), a point-by-point comparison of the answer with them (JSON), and a critique written from
# that comparison (its "critique summarization"). Here the same three steps, each one backend
# call over all questions: `knowledge_point_conversations` → `collect_knowledge_points` →
# `point_check_conversations` → `collect_point_checks` → `critique_from_checks_conversations`
# → `collect_critiques`. The one-prompt critique (`critique_conversations`) stays as the method
# `one_prompt` (an ablation).

CRITIQUE_METHODS = ("culfit", "one_prompt")
MAX_KNOWLEDGE_POINTS = 8
MAX_POINT_CHARS = 300
VERDICTS = ("covered", "partly covered", "missing", "contradicted")


def knowledge_points_schema(
    max_points: int = MAX_KNOWLEDGE_POINTS, max_chars: int = MAX_POINT_CHARS
) -> dict:
    """JSON schema of the knowledge points of g*: 1 to `max_points` non-empty sentences of at
    most `max_chars` characters."""
    return {
        "type": "object",
        "properties": {
            "knowledge_points": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": max_chars},
                "minItems": 1,
                "maxItems": max_points,
            }
        },
        "required": ["knowledge_points"],
        "additionalProperties": False,
    }


def point_checks_schema(n_points: int, max_chars: int = MAX_POINT_CHARS) -> dict:
    """JSON schema of the check of one answer against `n_points` knowledge points: exactly one
    verdict (and a comment of at most `max_chars` characters) per point, in the points' order."""
    return {
        "type": "object",
        "properties": {
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "verdict": {"enum": list(VERDICTS)},
                        "comment": {"type": "string", "maxLength": max_chars},
                    },
                    "required": ["verdict", "comment"],
                    "additionalProperties": False,
                },
                "minItems": n_points,
                "maxItems": n_points,
            }
        },
        "required": ["checks"],
        "additionalProperties": False,
    }


def knowledge_point_conversations(table: pl.DataFrame, template: str) -> list[list[dict[str, str]]]:
    """One user turn per question asking M for the key knowledge points of g* (weak language)."""
    return template_conversations(
        template,
        "consensus.culfit.knowledge_points_prompt",
        (
            {"question": q, "reference": ref, "language": language_label(lang)}
            for q, ref, lang in table.select(
                "question_weak", "gt_weak", "weak_language"
            ).iter_rows()
        ),
    )


def collect_knowledge_points(
    table: pl.DataFrame, outputs: Sequence[Sequence[dict | None]]
) -> tuple[pl.DataFrame, DropCounter]:
    """Add `knowledge_points` (a list of strings); questions whose reply did not parse, or whose
    points are all blank, are dropped and counted."""
    drops = DropCounter(stage="critique_knowledge_points")
    drops.seen(table.height)
    if len(outputs) != table.height:
        raise InputError("generator", f"returned {len(outputs)} replies for {table.height} prompts")
    points, keep = [], []
    for out in outputs:
        obj = out[0] if out else None
        pts = [p.strip() for p in (obj or {}).get("knowledge_points", []) if p.strip()]
        if obj is None:
            drops.drop("invalid_json")
        elif not pts:
            drops.drop("no_knowledge_points")
        points.append(pts)
        keep.append(bool(pts))
    out_table = table.with_columns(pl.Series("knowledge_points", points, dtype=pl.List(pl.String)))
    return out_table.filter(pl.Series(keep, dtype=pl.Boolean)), drops


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))


def point_check_conversations(table: pl.DataFrame, template: str) -> list[list[dict[str, str]]]:
    """One user turn per question asking M to check m_k against each knowledge point of g*."""
    return template_conversations(
        template,
        "consensus.culfit.check_prompt",
        (
            {
                "question": q,
                "answer": answer,
                "points": _numbered(points),
                "n_points": str(len(points)),
                "language": language_label(lang),
            }
            for q, answer, points, lang in table.select(
                "question_weak", "weak_answer", "knowledge_points", "weak_language"
            ).iter_rows()
        ),
    )


def point_check_groups(table: pl.DataFrame) -> dict[int, list[int]]:
    """Row indices by number of knowledge points (one JSON schema, one backend call per group)."""
    groups: dict[int, list[int]] = {}
    for i, pts in enumerate(table["knowledge_points"].to_list()):
        groups.setdefault(len(pts), []).append(i)
    return dict(sorted(groups.items()))


def collect_point_checks(
    table: pl.DataFrame, outputs: Sequence[Sequence[dict | None]]
) -> tuple[pl.DataFrame, DropCounter]:
    """Add `point_checks` (JSON text: [{point, verdict, comment}] in the points' order);
    replies that did not parse or have the wrong number of checks are dropped and counted."""
    import json

    drops = DropCounter(stage="critique_point_checks")
    drops.seen(table.height)
    if len(outputs) != table.height:
        raise InputError("generator", f"returned {len(outputs)} replies for {table.height} prompts")
    checks, keep = [], []
    for out, pts in zip(outputs, table["knowledge_points"].to_list(), strict=True):
        obj = out[0] if out else None
        got = (obj or {}).get("checks", [])
        if obj is None or len(got) != len(pts):
            drops.drop("invalid_json" if obj is None else "wrong_number_of_checks")
            checks.append("")
            keep.append(False)
            continue
        rows = [
            {"point": p, "verdict": c["verdict"], "comment": c["comment"].strip()}
            for p, c in zip(pts, got, strict=True)
        ]
        checks.append(json.dumps(rows, ensure_ascii=False))
        keep.append(True)
    out_table = table.with_columns(pl.Series("point_checks", checks, dtype=pl.String))
    return out_table.filter(pl.Series(keep, dtype=pl.Boolean)), drops


def format_checks(point_checks: str) -> str:
    """The point-by-point check as numbered lines for the critique prompt."""
    import json

    return "\n".join(
        f"{i}. {c['point']} — {c['verdict']}" + (f": {c['comment']}" if c["comment"] else "")
        for i, c in enumerate(json.loads(point_checks), 1)
    )


def critique_from_checks_conversations(
    table: pl.DataFrame, template: str
) -> list[list[dict[str, str]]]:
    """One user turn per question asking M to write the critique of m_k from its check."""
    return template_conversations(
        template,
        "consensus.culfit.critique_prompt",
        (
            {
                "question": q,
                "answer": answer,
                "checks": format_checks(checks),
                "language": language_label(lang),
            }
            for q, answer, checks, lang in table.select(
                "question_weak", "weak_answer", "point_checks", "weak_language"
            ).iter_rows()
        ),
    )


def culfit_critique_texts(
    generator: Any, table: pl.DataFrame, culfit: Mapping[str, Any], sampling: Any
) -> tuple[pl.DataFrame, list[str | None], list[DropCounter]]:
    """CulFiT's critique loop (consensus.critique_method 'culfit'): M lists the knowledge points
    of g*, checks its weak-side answer against them point by point (one batch per number of
    points, so each batch has one JSON schema), and writes the critique from the check. Returns
    the rows that reached the last step (knowledge points as JSON text), M's critiques of them
    and the drop counters of the first two steps. `generator` may be None when `table` is
    empty."""
    counters = []
    outputs: list[Any] = []
    if table.height:
        outputs = generator.generate_json(
            knowledge_point_conversations(table, culfit["knowledge_points_prompt"]),
            knowledge_points_schema(culfit["max_knowledge_points"], culfit["max_chars"]),
            1,
            sampling,
        )
    table, drops = collect_knowledge_points(table, outputs)
    counters.append(drops)
    outputs = [None] * table.height
    conversations = point_check_conversations(table, culfit["check_prompt"]) if table.height else []
    for n_points, rows in point_check_groups(table).items():
        replies = generator.generate_json(
            [conversations[i] for i in rows],
            point_checks_schema(n_points, culfit["max_chars"]),
            1,
            sampling,
        )
        for i, reply in zip(rows, replies, strict=True):
            outputs[i] = reply
    table, drops = collect_point_checks(table, outputs)
    counters.append(drops)
    critiques: list[str | None] = []
    if table.height:
        critiques = generator.generate(
            critique_from_checks_conversations(table, culfit["critique_prompt"]), 1, sampling
        )
    points = [json.dumps(pts, ensure_ascii=False) for pts in table["knowledge_points"].to_list()]
    table = table.with_columns(pl.Series("knowledge_points", points, dtype=pl.String))
    return table, critiques, counters


def critique_weak_answers(
    generator: Any,
    table: pl.DataFrame,
    method: str,
    prompt: str,
    culfit: Mapping[str, Any],
    sampling: Any,
) -> tuple[pl.DataFrame, list[DropCounter]]:
    """M's critiques of the weak-side answers in `table` (from :func:`pick_weak_answers`), by
    CulFiT's loop (`method` 'culfit', :func:`culfit_critique_texts`) or in one prompt
    (`prompt`); returns the critique table and every drop counter. `generator` may be None when
    `table` is empty."""
    counters: list[DropCounter] = []
    if method == "culfit":
        table, outputs, counters = culfit_critique_texts(generator, table, culfit, sampling)
    elif table.height:
        outputs = generator.generate(critique_conversations(table, prompt), 1, sampling)
    else:
        outputs = []
    critiques, drops = collect_critiques(table, outputs)
    return critiques, [*counters, drops]
