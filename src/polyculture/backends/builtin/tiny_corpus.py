"""The chat corpus of the built-in tiny models: small hand-written tables (resources/demo/tiny_chat)
expanded into a few thousand training conversations in the formats the pipeline reads
(numbered survey lists, short answers, translations, knowledge paragraphs, JSON questions,
stance labels, critiques and six-turn critique dialogues)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyculture.errors import InputError
from polyculture.io import read_text_utf8, read_yaml
from polyculture.languages import is_language_code, language_name

# The corpus files, in the order their bytes enter the corpus hash. Rules declare exactly these.
CORPUS_FILES = (
    "parallel.yaml",
    "survey.yaml",
    "short_answers.tsv",
    "statements.yaml",
    "tasks.yaml",
)
STANCES = ("pro", "con", "null")
TASKS = (
    "survey",
    "survey_translation",
    "short_answer",
    "translation",
    "paragraph",
    "question_json",
    "stance",
    "stance_list",
    "critique",
    "dialogue",
)
SYSTEM_PROMPT = "You are a helpful assistant."
SYSTEM_SHARE = 0.15  # share of conversations that open with a system message
SURVEY_ITEMS = 10
NULL_SHARE = 0.15  # share of 'null' summaries in a survey answer

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class SurveyLanguage:
    """Survey material of one language: prompts with {topic} (aligned across languages, and
    extra wordings of this language only), topics by id, people, stance patterns."""

    prompts: tuple[str, ...]
    extra_prompts: tuple[str, ...]
    topics: dict[str, str]
    people: tuple[str, ...]
    patterns: dict[str, tuple[str, ...]]  # stance → patterns with {person} and {topic}


@dataclass(frozen=True)
class Statement:
    """A cultural statement with detail, the question it answers and the short answer."""

    country: str
    language: str
    topic: str
    statement: str
    detail: str
    question: str
    answer: str
    question2: str


@dataclass(frozen=True)
class CorpusTables:
    """All hand-written tables of the tiny-model corpus, checked."""

    parallel: dict[str, dict[str, str]]  # sentence id → language → sentence
    survey: dict[str, SurveyLanguage]
    short_answers: tuple[tuple[str, str, str, str], ...]  # (language, country, question, answer)
    statements: tuple[Statement, ...]
    tasks: dict[str, Any]


def _expect(cond: bool, path: Path, problem: str) -> None:
    if not cond:
        raise InputError(path, problem)


def _str_list(value: Any, path: Path, key: str, min_len: int = 1) -> tuple[str, ...]:
    ok = (
        isinstance(value, list)
        and len(value) >= min_len
        and all(isinstance(v, str) and v for v in value)
    )
    _expect(ok, path, f"'{key}': expected a list of at least {min_len} non-empty strings")
    return tuple(value)


def _check_code(code: Any, path: Path, key: str) -> str:
    _expect(
        isinstance(code, str) and is_language_code(code),
        path,
        f"'{key}': '{code}' is not an ISO 639-1 code",
    )
    return code


def _load_parallel(path: Path) -> dict[str, dict[str, str]]:
    data = read_yaml(path)
    _expect(
        isinstance(data, dict) and data,
        path,
        "expected a mapping of sentence id → {language: sentence}",
    )
    langs: set[str] | None = None
    out: dict[str, dict[str, str]] = {}
    for sid, row in data.items():
        _expect(
            isinstance(row, dict) and row, path, f"'{sid}': expected a mapping language → sentence"
        )
        for code, text in row.items():
            _check_code(code, path, f"{sid}.{code}")
            _expect(
                isinstance(text, str) and text.strip() != "",
                path,
                f"'{sid}.{code}': empty sentence",
            )
        _expect(
            langs is None or set(row) == langs,
            path,
            f"'{sid}': languages differ from the first sentence's",
        )
        langs = set(row)
        out[str(sid)] = {str(k): str(v) for k, v in row.items()}
    return out


def _load_survey(path: Path) -> dict[str, SurveyLanguage]:
    data = read_yaml(path)
    _expect(isinstance(data, dict) and data, path, "expected a mapping language → survey material")
    out: dict[str, SurveyLanguage] = {}
    n_prompts: int | None = None
    topic_ids: set[str] | None = None
    for code, block in data.items():
        _check_code(code, path, str(code))
        _expect(isinstance(block, dict), path, f"'{code}': expected a mapping")
        prompts = _str_list(block.get("prompts"), path, f"{code}.prompts")
        extra = _str_list(block.get("extra_prompts", []), path, f"{code}.extra_prompts", 0)
        for key, texts in (("prompts", prompts), ("extra_prompts", extra)):
            for p in texts:
                ok = "{topic}" in p
                _expect(ok, path, f"'{code}.{key}': every prompt needs a {{topic}} slot: {p!r}")
        topics = block.get("topics")
        _expect(
            isinstance(topics, dict) and topics,
            path,
            f"'{code}.topics': expected a mapping id → phrase",
        )
        _expect(
            n_prompts is None or len(prompts) == n_prompts, path, f"'{code}.prompts': count differs"
        )
        _expect(topic_ids is None or set(topics) == topic_ids, path, f"'{code}.topics': ids differ")
        n_prompts, topic_ids = len(prompts), set(topics)
        people = _str_list(block.get("people"), path, f"{code}.people", SURVEY_ITEMS)
        patterns = {s: _str_list(block.get(s), path, f"{code}.{s}") for s in STANCES}
        for s, pats in patterns.items():
            for p in pats:
                _expect(
                    "{person}" in p and "{topic}" in p,
                    path,
                    f"'{code}.{s}': pattern needs {{person}} and {{topic}}: {p!r}",
                )
        out[str(code)] = SurveyLanguage(
            prompts, extra, {str(k): str(v) for k, v in topics.items()}, people, patterns
        )
    _expect(
        "en" in out,
        path,
        "English ('en') survey material is required (source of prompt translations)",
    )
    return out


def _load_short_answers(path: Path) -> tuple[tuple[str, str, str, str], ...]:
    reader = csv.reader(io.StringIO(read_text_utf8(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    header = ["language", "country", "question", "answer"]
    _expect(bool(rows) and rows[0] == header, path, f"header must be {'<TAB>'.join(header)}")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        ok = len(row) == len(header) and all(c.strip() for c in row)
        _expect(ok, path, f"line {i}: expected {len(header)} non-empty tab-separated fields")
        _check_code(row[0], path, f"line {i} language")
        out.append((row[0], row[1], row[2], row[3]))
    _expect(bool(out), path, "no rows")
    return tuple(out)


def _load_statements(path: Path) -> tuple[Statement, ...]:
    data = read_yaml(path)
    _expect(isinstance(data, list) and data, path, "expected a list of statements")
    fields = (
        "country",
        "language",
        "topic",
        "statement",
        "detail",
        "question",
        "answer",
        "question2",
    )
    out = []
    for i, row in enumerate(data):
        ok = (
            isinstance(row, dict)
            and set(row) == set(fields)
            and all(isinstance(row[f], str) and row[f] for f in fields)
        )
        _expect(
            ok, path, f"item {i}: expected exactly the non-empty string keys {', '.join(fields)}"
        )
        _check_code(row["language"], path, f"item {i}.language")
        out.append(Statement(**{f: row[f] for f in fields}))
    return tuple(out)


TEMPLATE_LISTS = (
    "translation",
    "short_answer",
    "paragraph",
    "paragraph_closing",
    "question_json",
    "question_extra",
    "stance",
    "stance_list",
    "critique",
)
LOCALIZED_LISTS = ("critique_wrong", "critique_right", "critique_request", "refine_request")


def _load_tasks(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    _expect(isinstance(data, dict), path, "expected a mapping")
    counts = data.get("counts")
    ok = isinstance(counts, dict) and set(counts) == set(TASKS)
    _expect(ok, path, f"'counts': expected exactly the tasks {', '.join(TASKS)}")
    for task, n in counts.items():
        ok = isinstance(n, int) and n >= 0
        _expect(ok, path, f"'counts.{task}': expected a non-negative integer")
    for key in TEMPLATE_LISTS:
        _str_list(data.get(key), path, key)
    for key in LOCALIZED_LISTS:
        block = data.get(key)
        ok = isinstance(block, dict) and "en" in block
        _expect(ok, path, f"'{key}': expected a mapping language → templates, with 'en'")
        for code, templates in block.items():
            _check_code(code, path, f"{key}.{code}")
            _str_list(templates, path, f"{key}.{code}")
    for key in ("judge_system", "judge_user"):
        ok = isinstance(data.get(key), str) and bool(data[key])
        _expect(ok, path, f"'{key}': expected a non-empty string")
    pairs = data.get("stance_statements")
    ok = isinstance(pairs, dict) and bool(pairs)
    _expect(ok, path, "'stance_statements': expected a mapping topic id → [pro, con]")
    for tid, pair in pairs.items():
        _str_list(pair, path, f"stance_statements.{tid}", 2)
        _expect(len(pair) == 2, path, f"'stance_statements.{tid}': expected exactly [pro, con]")
    aliases = data.get("language_aliases", {})
    _expect(isinstance(aliases, dict), path, "'language_aliases': expected a mapping code → names")
    for code, names in aliases.items():
        _check_code(code, path, f"language_aliases.{code}")
        _str_list(names, path, f"language_aliases.{code}")
    return data


def load_corpus_tables(corpus_dir: str | os.PathLike[str]) -> CorpusTables:
    """Read and check the corpus tables in `corpus_dir`; errors name the file and the key or line."""
    d = Path(corpus_dir)
    for name in CORPUS_FILES:
        if not (d / name).is_file():
            raise InputError(d / name, "missing corpus file of the built-in tiny models")
    tables = CorpusTables(
        parallel=_load_parallel(d / "parallel.yaml"),
        survey=_load_survey(d / "survey.yaml"),
        short_answers=_load_short_answers(d / "short_answers.tsv"),
        statements=_load_statements(d / "statements.yaml"),
        tasks=_load_tasks(d / "tasks.yaml"),
    )
    topics = set(tables.survey["en"].topics)
    _expect(
        set(tables.tasks["stance_statements"]) == topics,
        d / "tasks.yaml",
        f"'stance_statements': expected exactly the survey topic ids {', '.join(sorted(topics))}",
    )
    return tables


def corpus_sha256(corpus_dir: str | os.PathLike[str]) -> str:
    """sha256 over the corpus files (name and bytes, in CORPUS_FILES order)."""
    h = hashlib.sha256()
    for name in CORPUS_FILES:
        h.update(name.encode() + b"\0" + (Path(corpus_dir) / name).read_bytes() + b"\0")
    return h.hexdigest()


def language_names(code: str, tables: CorpusTables) -> tuple[str, ...]:
    """English names a prompt may use for a language: the ISO name and the table's aliases."""
    return (language_name(code), *tables.tasks.get("language_aliases", {}).get(code, ()))


def capitalize_first(text: str) -> str:
    """`text` with its first character upper-cased (other characters unchanged)."""
    return text[:1].upper() + text[1:]


def survey_summary(lang: SurveyLanguage, stance: str, person: str, topic: str, pattern: int) -> str:
    """One interview summary: a stance pattern filled with a person and a topic phrase."""
    pats = lang.patterns[stance]
    return capitalize_first(pats[pattern % len(pats)].format(person=person, topic=topic))


def numbered_list(items: Sequence[str]) -> str:
    """'1. a\\n2. b…' — the survey answer format the response parser reads."""
    return "\n".join(f"{i}. {s}" for i, s in enumerate(items, start=1))


def topic_polarity(tables: CorpusTables, seed: int) -> dict[tuple[str, str], float]:
    """A fixed pro share per (language, topic), so the tiny model has opinions that vary by both."""
    rng = random.Random(f"{seed}:polarity")
    return {
        (code, t): round(rng.uniform(0.15, 0.85), 3)
        for code in sorted(tables.survey)
        for t in sorted(tables.survey[code].topics)
    }


def _draw_stances(rng: random.Random, pro_share: float, n: int) -> list[str]:
    out = []
    for _ in range(n):
        u = rng.random()
        out.append(
            "null"
            if u < NULL_SHARE
            else ("pro" if u < NULL_SHARE + (1 - NULL_SHARE) * pro_share else "con")
        )
    return out


def _survey_answer(
    rng: random.Random, lang: SurveyLanguage, topic: str, pro_share: float
) -> tuple[list[str], list[str]]:
    people = rng.sample(lang.people, SURVEY_ITEMS)
    stances = _draw_stances(rng, pro_share, SURVEY_ITEMS)
    items = [
        survey_summary(lang, s, p, topic, rng.randrange(len(lang.patterns[s])))
        for s, p in zip(stances, people, strict=True)
    ]
    return items, stances


def _chat(rng: random.Random, *turns: str) -> Conversation:
    """user/assistant alternation, with a system message in a share of conversations."""
    conv: Conversation = []
    if rng.random() < SYSTEM_SHARE:
        conv.append({"role": "system", "content": SYSTEM_PROMPT})
    for i, text in enumerate(turns):
        conv.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return conv


class _Gen:
    """Draws conversations of each task from the tables with one seeded random stream."""

    def __init__(self, tables: CorpusTables, seed: int) -> None:
        self.t = tables
        self.rng = random.Random(f"{seed}:corpus")
        self.polarity = topic_polarity(tables, seed)
        self.survey_langs = sorted(tables.survey)
        self.parallel_langs = sorted(next(iter(tables.parallel.values())))
        # (language, question, reference answer) for critiques and dialogues
        self.qa_pool = [(lang, q, a) for lang, _, q, a in tables.short_answers] + [
            ("en", s.question, s.answer) for s in tables.statements
        ]

    def tpl(self, key: str) -> str:
        return self.rng.choice(self.t.tasks[key])

    def local_tpl(self, key: str, code: str) -> str:
        return self.rng.choice(self.t.tasks[key][code])

    def name(self, code: str) -> str:
        return self.rng.choice(language_names(code, self.t))

    def survey(self) -> Conversation:
        code = self.rng.choice(self.survey_langs)
        lang = self.t.survey[code]
        tid = self.rng.choice(sorted(lang.topics))
        prompt = self.rng.choice(lang.prompts + lang.extra_prompts).format(topic=lang.topics[tid])
        items, _ = _survey_answer(self.rng, lang, lang.topics[tid], self.polarity[(code, tid)])
        return _chat(self.rng, prompt, numbered_list(items))

    def survey_translation(self) -> Conversation:
        other = self.rng.choice([c for c in self.survey_langs if c != "en"])
        src, tgt = ("en", other) if self.rng.random() < 0.7 else (other, "en")
        i = self.rng.randrange(len(self.t.survey["en"].prompts))
        tid = self.rng.choice(sorted(self.t.survey["en"].topics))
        s, g = self.t.survey[src], self.t.survey[tgt]
        text = s.prompts[i].format(topic=s.topics[tid])
        out = g.prompts[i].format(topic=g.topics[tid])
        prompt = self.tpl("translation").format(
            source=self.name(src), target=self.name(tgt), text=text
        )
        return _chat(self.rng, prompt, out)

    def translation(self) -> Conversation:
        sid = self.rng.choice(sorted(self.t.parallel))
        src, tgt = self.rng.sample(self.parallel_langs, 2)
        row = self.t.parallel[sid]
        prompt = self.tpl("translation").format(
            source=self.name(src), target=self.name(tgt), text=row[src]
        )
        return _chat(self.rng, prompt, row[tgt])

    def short_answer(self) -> Conversation:
        code, country, q, a = self.rng.choice(self.t.short_answers)
        prompt = self.tpl("short_answer").format(
            question=q, language=self.name(code), country=country
        )
        return _chat(self.rng, prompt, a)

    def _paragraph(self, s: Statement) -> str:
        closing = self.tpl("paragraph_closing").format(country=s.country)
        return f"{s.statement} {s.detail} {closing}"

    def paragraph(self) -> Conversation:
        s = self.rng.choice(self.t.statements)
        prompt = self.tpl("paragraph").format(
            statement=s.statement, topic=s.topic, country=s.country
        )
        return _chat(self.rng, prompt, self._paragraph(s))

    def question_json(self) -> Conversation:
        s = self.rng.choice(self.t.statements)
        k = self.rng.randint(1, 3)
        extra = [q.format(country=s.country) for q in self.t.tasks["question_extra"]]
        questions = [s.question, s.question2, *extra][:k]
        prompt = self.tpl("question_json").format(
            paragraph=self._paragraph(s), topic=s.topic, country=s.country, k=k
        )
        obj = {
            "questions": [
                {"question": q, "country": s.country, "language": s.language} for q in questions
            ]
        }
        return _chat(self.rng, prompt, json.dumps(obj, ensure_ascii=False))

    def _summary(self) -> tuple[str, str, str, str]:
        """(topic id, English or local topic phrase, summary, stance) of one random interview."""
        code = self.rng.choice(self.survey_langs)
        lang = self.t.survey[code]
        tid = self.rng.choice(sorted(lang.topics))
        stance = self.rng.choice(STANCES)
        person = self.rng.choice(lang.people)
        summary = survey_summary(lang, stance, person, lang.topics[tid], self.rng.randrange(3))
        topic = self.t.survey["en"].topics[tid] if self.rng.random() < 0.5 else lang.topics[tid]
        return tid, topic, summary, stance

    def stance(self) -> Conversation:
        tid, topic, summary, stance = self._summary()
        answer = json.dumps({"stance": stance})
        if self.rng.random() < 0.5:  # the WVS judge's format
            pro, con = self.t.tasks["stance_statements"][tid]
            label = capitalize_first(self.t.survey["en"].topics[tid])
            user = self.t.tasks["judge_user"].format(topic=label, pro=pro, con=con, summary=summary)
            return [
                {"role": "system", "content": self.t.tasks["judge_system"]},
                {"role": "user", "content": user},
                {"role": "assistant", "content": answer},
            ]
        return _chat(self.rng, self.tpl("stance").format(topic=topic, summary=summary), answer)

    def stance_list(self) -> Conversation:
        code = self.rng.choice(self.survey_langs)
        lang = self.t.survey[code]
        tid = self.rng.choice(sorted(lang.topics))
        items, stances = _survey_answer(
            self.rng, lang, lang.topics[tid], self.polarity[(code, tid)]
        )
        k = self.rng.randint(3, SURVEY_ITEMS)
        topic = self.t.survey["en"].topics[tid]
        prompt = self.tpl("stance_list").format(topic=topic, summaries=numbered_list(items[:k]))
        return _chat(self.rng, prompt, json.dumps({"stances": stances[:k]}))

    def _answer_pair(self) -> tuple[str, str, str, str, bool]:
        """(language, question, reference, given answer, whether the given answer is right); a
        wrong answer is another answer in the same language."""
        code, q, ref = self.rng.choice(self.qa_pool)
        if self.rng.random() < 0.3:
            return code, q, ref, ref, True
        wrong = self.rng.choice([a for c, _, a in self.qa_pool if c == code and a != ref])
        return code, q, ref, wrong, False

    def _critique(self, code: str, answer: str, ref: str, right: bool) -> str:
        key = "critique_right" if right else "critique_wrong"
        return self.local_tpl(key, code).format(answer=answer, reference=ref)

    def _local(self, code: str) -> str:
        """`code` where critiques are written in it, else English."""
        return code if code in self.t.tasks["critique_wrong"] else "en"

    def critique(self) -> Conversation:
        code, q, ref, ans, right = self._answer_pair()
        out = self._local(code) if self.rng.random() < 0.7 else "en"
        prompt = self.tpl("critique")
        if "{language}" not in prompt:
            out = "en"
        text = prompt.format(question=q, answer=ans, reference=ref, language=self.name(out))
        return _chat(self.rng, text, self._critique(out, ans, ref, right))

    def dialogue(self) -> Conversation:
        code, q, ref, ans, right = self._answer_pair()
        out = self._local(code)
        return _chat(
            self.rng,
            q,
            ans,
            self.local_tpl("critique_request", out).format(reference=ref),
            self._critique(out, ans, ref, right),
            self.local_tpl("refine_request", out),
            ref,
        )


def build_chat_corpus(tables: CorpusTables, seed: int) -> list[Conversation]:
    """Training conversations: tasks.yaml `counts` of each task, drawn with `seed`, shuffled."""
    gen = _Gen(tables, seed)
    convs = [getattr(gen, task)() for task in TASKS for _ in range(tables.tasks["counts"][task])]
    gen.rng.shuffle(convs)
    return convs


def tokenizer_texts(tables: CorpusTables) -> list[str]:
    """Every string of the tables, with the survey material fully expanded (no randomness), as
    the tokenizer's training text: the same tables always give the same tokenizer."""
    t = tables
    texts: list[str] = []
    for row in t.parallel.values():
        texts.extend(row[c] for c in sorted(row))
    for code in sorted(t.survey):
        lang = t.survey[code]
        for tid in sorted(lang.topics):
            topic = lang.topics[tid]
            texts.extend(p.format(topic=topic) for p in lang.prompts + lang.extra_prompts)
            for stance in STANCES:
                for i in range(len(lang.patterns[stance])):
                    texts.extend(
                        survey_summary(lang, stance, person, topic, i) for person in lang.people
                    )
    for row in t.short_answers:
        texts.extend(row[1:])
    for s in t.statements:
        texts.extend((s.topic, s.statement, s.detail, s.question, s.answer, s.question2))

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [x for v in value for x in strings(v)]
        if isinstance(value, dict):
            return [x for k in sorted(value) for x in strings(value[k])]
        return []

    for key in sorted(t.tasks):
        if key not in ("counts", "language_aliases"):
            texts.extend(strings(t.tasks[key]))
    texts.extend(json.dumps({"stance": s}) for s in STANCES)
    texts.extend(numbered_list([""] * SURVEY_ITEMS).splitlines())
    texts.append(SYSTEM_PROMPT)
    return texts


def translation_pairs(tables: CorpusTables) -> list[tuple[str, str, str]]:
    """(group id, language, text) of texts that say the same thing in different languages: the
    parallel sentences and the survey summaries (patterns, people and topics are aligned by
    position across languages). Texts with the same group id are translations of each other."""
    out = [
        (f"p:{sid}", code, text)
        for sid, row in sorted(tables.parallel.items())
        for code, text in sorted(row.items())
    ]
    for code in sorted(tables.survey):
        lang = tables.survey[code]
        for tid in sorted(lang.topics):
            for stance in STANCES:
                for i in range(len(lang.patterns[stance])):
                    for j, person in enumerate(lang.people):
                        text = survey_summary(lang, stance, person, lang.topics[tid], i)
                        out.append((f"s:{tid}:{stance}:{i}:{j}", code, text))
    return out


def conversation_counts(convs: Sequence[Conversation]) -> Mapping[str, int]:
    """Number of conversations and of turns by role (for build_info.json)."""
    roles: dict[str, int] = {"conversations": len(convs)}
    for conv in convs:
        for m in conv:
            roles[m["role"]] = roles.get(m["role"], 0) + 1
    return roles
