"""BLEnD short-answer evaluation: prompts, response cleaning, lemmatization and SEM-B / SEM-W.

Data layout (a local directory; the BLEnD release or the project's demo set)::

    questions/{Country}_questions.csv    ID, Topic, Question (local language), Translation (English)
    annotations/{Country}_data.json      {ID: {question, en_question, annotations, idks}}
    prompts/{Country}_prompts.csv        id, English, Translation (templates with a {q} slot)

Prompts. A run is one (country, language, prompt template). The language is English or the
country's language (``polyculture.languages.BLEND_REGIONS``); UK and US have English only.
English runs fill the template's ``English`` column with the question's English text
(``Translation``); local runs fill the template's ``Translation`` column with the local question
(``Question``). For UK/US the ``Question`` column is the native English text and is used.

Scoring rule (the BLEnD soft exact match, re-implemented from the paper's evaluation code):

1. Skip a question when no-answer + not-applicable ≥ 3, or idk ≥ 5, or it has no annotation
   clusters. The remaining questions are the valid ones (the denominator of both scores; a
   valid question without a response counts as wrong).
2. Clean the response: remove an echo of the prompt, map full-width punctuation (：、，。) to
   ASCII, lowercase, drop a leading ``label:`` whose word occurs in the prompt (``Answer:``,
   ``Απάντηση:``), strip whitespace and surrounding periods.
3. Walk the annotation clusters in vote order (count, descending; ties keep file order). In a
   local-language run a cluster is tried with its local answers, then its English answers; in
   an English run with its English answers only. The first cluster with a matching answer is
   the match.
4. An answer matches when (after the same punctuation mapping, lowercase and strip) it is a
   substring of the response, also with hyphens written as spaces or spaces as hyphens; or
   when every token of the lemmatized answer is among the tokens of the lemmatized response.
   Tokens are lowercased, accents are stripped (combining diacritics U+0300–U+036F after NFD,
   so Greek tonos and Spanish acute accents go, Hangul and Indic vowel signs stay) and
   punctuation/symbol tokens are dropped. Local answers are analysed in the country's
   language, English answers in English.
5. SEM-B = 100 × matched / valid. SEM-W = 100 × Σ(matched cluster's count / top count) / valid.

Lemmatizers per language (the official scorer, ``evaluation/exact_match.py`` of nlee0212/BLEnD,
uses spaCy, Okt, Spark NLP, CLTK, hazm, nlp_id, qalsadi, jieba and per-language stemmers; here the
official tool where it installs from PyPI and runs offline, else a maintained offline library,
else plain tokenization):

============================  ======================================================
fa                             hazm ``Lemmatizer`` per token (official tool; hazm 0.10.0)
id                             nlp_id ``Lemmatizer`` on the text, split on spaces (official
                               tool; nlp_id 0.1.23.0)
zh                             jieba word segmentation (official tool; no lemmas in Chinese)
en, el, es, ar                 simplemma (dictionary lemmatizer; its own tokenizer). Official:
                               spaCy en_core_web_sm, CLTK, Spark NLP, qalsadi (models that are
                               not on PyPI or need Java/Spark)
ko                             kiwipiepy morphemes: particles (J*) and endings (E*) dropped,
                               verb/adjective stems as dictionary forms (stem + 다), as the
                               official Okt with stem=True (Okt needs Java)
as, am, ha, su, az, others     fallback: split on whitespace and punctuation, no lemmas
                               (official: Indic trivial tokenizer for Assamese, stemmers for
                               Amharic, Hausa, Sundanese, Azerbaijani)
============================  ======================================================

hazm and nlp_id declare pins that clash with this project's (numpy==1.24.3; numpy==2.4.4,
scikit-learn==1.8.0, ...), so they are installed with ``pip install --no-deps`` (the Makefile
does it); what their lemmatizers import at run time (hazm: nltk, flashtext, python-crfsuite,
gensim, fasttext-wheel through its package ``__init__``; nlp_id: nothing beyond the standard
library for the lemmatizer) is in pyproject.toml. Both run offline: their word lists ship in the
wheels. Where one is not installed, the language falls back to simplemma with a warning, and
:func:`analyzer_name` says so.

Two rule sets (``rules=``; config ``evaluate.blend.scorer_rules``):

``polyculture`` (default) fixes three bugs of the official code, each an accident of it:

1. *Case-sensitive substring test on the raw answer.* The official ``lemma_check`` tests
   ``answer in llm_response`` with the annotated answer as written and the response lowercased,
   so a capitalised answer ("Paella") can only match through tokens. Here the answer is
   lowercased and punctuation-mapped as the response is.
2. *An empty answer matches any response.* ``'' in response`` is true, and an answer whose
   tokens are all punctuation gives an empty token list whose ``all()`` is true. The release has
   7 empty answers (1 local, 6 English). Here empty answers and answers with no tokens never
   match.
3. *A response "None" is read as missing.* The official scorer reads responses with
   ``pandas.read_csv``, whose default NA strings ("None", "NA", "null", "nan", "N/A", ...) turn
   such an answer into a float and then into "no response". Here a response is text.

and, less consequential: all combining diacritics are stripped, not only the acute accent;
punctuation tokens are any Unicode punctuation or symbol, not substrings of ASCII
``string.punctuation``; only the leading label is removed, not every later occurrence of its
text; Persian is split on punctuation as well as spaces before hazm lemmatizes it.

``official`` reproduces the official code's behaviour, bugs included (for comparisons with
published numbers): the three above and the less consequential ones, with the same lemmatizers
as ``polyculture``. The release lists clusters in vote order (checked on all 8,000 questions by
``tests/test_blend_parity.py``), so the official walk in file order with the first cluster's
count as the maximum is the walk in vote order here.
"""

from __future__ import annotations

import json
import logging
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, InputError
from polyculture.languages import BLEND_REGIONS, iso639_1, normalize_region

log = logging.getLogger(__name__)

SKIP_NO_ANSWER_NA = 3  # skip when no-answer + not-applicable >= this
SKIP_IDK = 5  # skip when idk >= this

# Rule sets of the scorer (module docstring): the project's fixes, or the official code's behaviour.
SCORER_RULES = ("polyculture", "official")

# pandas.read_csv's default NA strings: the official scorer reads a response that is exactly one
# of these as missing (pandas 2.x/3.x `na_values` defaults; '' is missing either way).
PANDAS_NA_STRINGS = frozenset(
    (
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    )
)

QUESTION_COLUMNS = ("ID", "Question", "Translation")
PROMPT_COLUMNS = ("id", "English", "Translation")
RESPONSE_COLUMNS = ("ID", "country", "language", "response")

# BLEnD's language names (its file and column names) → ISO 639-1.
BLEND_LANGUAGE_NAMES = {
    "english": "en",
    "chinese": "zh",
    "spanish": "es",
    "indonesian": "id",
    "greek": "el",
    "sundanese": "su",
    "azerbaijani": "az",
    "korean": "ko",
    "arabic": "ar",
    "persian": "fa",
    "assamese": "as",
    "amharic": "am",
    "hausa": "ha",
}

# Languages that simplemma 2.x ships dictionaries for.
# fmt: off
SIMPLEMMA_LANGUAGES = frozenset((
    "ar", "ast", "bg", "ca", "cs", "cy", "da", "de", "el", "en", "enm", "eo", "es", "et", "fa",
    "fi", "fr", "ga", "gd", "gl", "grc", "gv", "hbs", "he", "hi", "hu", "hy", "id", "is", "it",
    "ka", "la", "lb", "lt", "lv", "mk", "ml", "ms", "nb", "nl", "nn", "pl", "pt", "ro", "ru",
    "se", "sk", "sl", "sq", "sv", "sw", "tl", "tr", "uk",
))
# fmt: on

PER_QUESTION_SCHEMA = {
    "ID": pl.String,
    "country": pl.String,
    "language": pl.String,
    "prompt_id": pl.String,
    "valid": pl.Boolean,
    "skip_reason": pl.String,
    "answered": pl.Boolean,
    "response": pl.String,
    "cleaned": pl.String,
    "match": pl.Int8,
    "weight": pl.Float64,
    "cluster_rank": pl.Int32,
    "cluster_count": pl.Int32,
    "top_count": pl.Int32,
    "matched_answer": pl.String,
    "matched_via": pl.String,
}

SCORE_SCHEMA = {
    "country": pl.String,
    "language": pl.String,
    "prompt_id": pl.String,
    "sem_b": pl.Float64,
    "sem_w": pl.Float64,
    "n_valid": pl.Int64,
    "n_answered": pl.Int64,
    "n_empty": pl.Int64,
    "n_missing": pl.Int64,
    "n_questions": pl.Int64,
}


# --------------------------------------------------------------------------- data layout


@dataclass(frozen=True)
class Cluster:
    """One group of equivalent annotator answers and how many annotators gave it."""

    answers: tuple[str, ...]
    en_answers: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class Question:
    """A BLEnD question's annotations: clusters in vote order and the idk counts."""

    qid: str
    clusters: tuple[Cluster, ...]
    idk: int
    no_answer: int
    not_applicable: int

    @property
    def top_count(self) -> int:
        return self.clusters[0].count if self.clusters else 0


def annotations_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's annotation JSON in a BLEnD directory."""
    return Path(data_dir) / "annotations" / f"{normalize_region(country)}_data.json"


def questions_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's question CSV in a BLEnD directory."""
    return Path(data_dir) / "questions" / f"{normalize_region(country)}_questions.csv"


def prompts_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's prompt-template CSV in a BLEnD directory."""
    return Path(data_dir) / "prompts" / f"{normalize_region(country)}_prompts.csv"


def available_countries(data_dir: str | Path) -> list[str]:
    """BLEnD regions with an annotation file in `data_dir`, sorted."""
    folder = Path(data_dir) / "annotations"
    if not folder.is_dir():
        raise InputError(folder, "not a directory; expected BLEnD annotations/{Country}_data.json")
    found = sorted(p.name.removesuffix("_data.json") for p in folder.glob("*_data.json"))
    return [c for c in found if c in BLEND_REGIONS]


def _int_field(value: Any, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(path, f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _str_list(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_annotations(data: Any, path: Path) -> dict[str, Question]:
    """Check and convert a country's annotation JSON; errors name the file and question ID.

    Missing idk keys count as 0; clusters are put in vote order (count descending, stable)."""
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object keyed by question ID")
    out: dict[str, Question] = {}
    for qid, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"question {qid}: expected an object")
        for key in ("annotations", "idks"):
            if key not in entry:
                raise InputError(path, f"question {qid}: missing key '{key}'")
        anns, idks = entry["annotations"], entry["idks"]
        if not isinstance(anns, list):
            raise InputError(path, f"question {qid}: 'annotations' must be a list")
        if not isinstance(idks, dict):
            raise InputError(path, f"question {qid}: 'idks' must be an object")
        clusters = []
        for i, ann in enumerate(anns):
            where = f"question {qid}, annotation {i}"
            if not isinstance(ann, dict) or not {"answers", "en_answers", "count"} <= set(ann):
                raise InputError(
                    path, f"{where}: expected an object with answers, en_answers, count"
                )
            clusters.append(
                Cluster(
                    answers=_str_list(ann["answers"], path, f"{where}.answers"),
                    en_answers=_str_list(ann["en_answers"], path, f"{where}.en_answers"),
                    count=_int_field(ann["count"], path, f"{where}.count"),
                )
            )
        clusters.sort(key=lambda c: -c.count)
        out[str(qid)] = Question(
            qid=str(qid),
            clusters=tuple(clusters),
            idk=_int_field(idks.get("idk", 0), path, f"question {qid}, idks.idk"),
            no_answer=_int_field(idks.get("no-answer", 0), path, f"question {qid}, idks.no-answer"),
            not_applicable=_int_field(
                idks.get("not-applicable", 0), path, f"question {qid}, idks.not-applicable"
            ),
        )
    return out


def load_annotations(path: str | Path) -> dict[str, Question]:
    """Read a BLEnD annotation file ({Country}_data.json)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "annotation file does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(p, "not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise InputError(p, f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return parse_annotations(data, p)


def _read_csv(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        df = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise InputError(path, f"could not be read as CSV: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )
    return df


def load_questions(path: str | Path) -> pl.DataFrame:
    """Read a BLEnD question file: ID, Question (local), Translation (English), ...; IDs unique."""
    p = Path(path)
    df = _read_csv(p, QUESTION_COLUMNS)
    dup = df.filter(pl.col("ID").is_duplicated())["ID"].unique().sort().to_list()
    if dup:
        raise InputError(p, f"duplicate question ID(s): {', '.join(dup[:5])}")
    nulls = df.filter(pl.any_horizontal(pl.col(list(QUESTION_COLUMNS)).is_null()))
    if nulls.height:
        raise InputError(p, f"question {nulls['ID'][0]!r} has an empty ID, Question or Translation")
    return df


def load_prompt_templates(path: str | Path) -> dict[str, tuple[str, str]]:
    """Read a BLEnD prompt file: template id → (English template, local-language template).

    Templates are checked for their {q} slot when used (the release has unused templates
    without one). Where an id occurs twice the first row is used, as the released code does
    (the release lists two Azerbaijani translations of inst-4 and pers-3)."""
    p = Path(path)
    df = _read_csv(p, PROMPT_COLUMNS)
    out: dict[str, tuple[str, str]] = {}
    for row in df.iter_rows(named=True):
        if row["id"] in out:
            log.warning("%s: template %r appears again; using its first row", p, row["id"])
            continue
        out[row["id"]] = (row["English"] or "", row["Translation"] or "")
    return out


def run_languages(country: str) -> list[str]:
    """Languages a country is asked in: English, then its own language unless that is English."""
    country = normalize_region(country)
    if country not in BLEND_REGIONS:
        raise InputError(country, f"not a BLEnD region; expected one of {', '.join(BLEND_REGIONS)}")
    local = BLEND_REGIONS[country]
    return ["en"] if local == "en" else ["en", local]


def build_prompts(
    questions: pl.DataFrame,
    templates: Mapping[str, tuple[str, str]],
    country: str,
    language: str,
    prompt_id: str,
) -> pl.DataFrame:
    """One row per question: ID, country, language, prompt_id, question, prompt (filled template)."""
    country = normalize_region(country)
    if language not in run_languages(country):
        raise InputError(
            country, f"language {language!r} is not asked; expected one of {run_languages(country)}"
        )
    if prompt_id not in templates:
        raise InputError(
            country, f"prompt template {prompt_id!r} not found; have {', '.join(templates)}"
        )
    english, local = templates[prompt_id]
    native_english = BLEND_REGIONS[country] == "en"
    if language == "en":
        template, column = english, ("Question" if native_english else "Translation")
    else:
        template, column = local, "Question"
    if "{q}" not in template:
        which = "English" if language == "en" else "Translation"
        raise InputError(
            country,
            f"prompt template {prompt_id!r} ({which} column) has no {{q}} slot for the question",
        )
    texts = questions[column].to_list()
    return pl.DataFrame(
        {
            "ID": questions["ID"].to_list(),
            "country": [country] * len(texts),
            "language": [language] * len(texts),
            "prompt_id": [prompt_id] * len(texts),
            "question": texts,
            "prompt": [template.replace("{q}", q) for q in texts],
        },
        schema={
            k: pl.String for k in ("ID", "country", "language", "prompt_id", "question", "prompt")
        },
    )


def skip_reason(q: Question) -> str | None:
    """Why a question is left out of scoring (the BLEnD rules), or None when it is valid."""
    if q.no_answer + q.not_applicable >= SKIP_NO_ANSWER_NA:
        return "no_answer_or_not_applicable"
    if q.idk >= SKIP_IDK:
        return "idk"
    if not q.clusters:
        return "no_annotations"
    return None


# --------------------------------------------------------------------------- cleaning

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


# --------------------------------------------------------------------------- lemmatization


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


def answer_matches_official(answer: str, response: str, language: str) -> bool:
    """The official ``lemma_check``: the raw answer (case as annotated) or its hyphen/space
    variants as a substring of the cleaned response, or every official token of the answer among
    the response's. An empty answer, or one with no tokens, matches every response."""
    if answer in response or answer.replace("-", " ") in response:
        return True
    if answer.replace(" ", "-") in response:
        return True
    resp_tokens = set(official_tokens(response, language))
    return all(t in resp_tokens for t in official_tokens(answer, language))


# --------------------------------------------------------------------------- matching


def answer_matches(answer: str, response: str, language: str) -> bool:
    """Whether one annotated answer matches a cleaned response (substring with hyphen/space
    variants, or all lemmatized answer tokens among the response's)."""
    ans = normalize_text(answer)
    if not ans or not response:
        return False
    if ans in response or ans.replace("-", " ") in response or ans.replace(" ", "-") in response:
        return True
    ans_tokens = lemma_tokens(ans, language)
    if not ans_tokens:
        return False
    resp_tokens = set(lemma_tokens(response, language))
    return all(t in resp_tokens for t in ans_tokens)


@dataclass(frozen=True)
class Match:
    """The first cluster (in vote order) that a response matches."""

    rank: int  # 0 = the top cluster
    count: int
    top_count: int
    answer: str
    via: str  # 'local' or 'en': which answers of the cluster matched

    @property
    def weight(self) -> float:
        return self.count / self.top_count if self.top_count else 0.0


def match_question(
    q: Question, response: str, language: str, local_language: str, rules: str = "polyculture"
) -> Match | None:
    """Walk the clusters in vote order; local runs try local answers before English ones.
    `rules` = 'official' matches with :func:`answer_matches_official`."""
    if not response:
        return None
    matches = answer_matches_official if check_rules(rules) == "official" else answer_matches
    for rank, cluster in enumerate(q.clusters):
        if language != "en":
            for a in cluster.answers:
                if matches(a, response, local_language):
                    return Match(rank, cluster.count, q.top_count, a, "local")
        for a in cluster.en_answers:
            if matches(a, response, "en"):
                return Match(rank, cluster.count, q.top_count, a, "en")
    return None


def score_run(
    annotations: Mapping[str, Question],
    responses: Mapping[str, str | None],
    *,
    country: str,
    language: str,
    prompt_id: str = "",
    prompts: Mapping[str, str] | None = None,
    rules: str = "polyculture",
) -> pl.DataFrame:
    """Per-question scores of one run (country × language × prompt template).

    `responses` maps question ID → raw model response (None or absent: no response);
    `prompts` maps ID → the prompt text that produced it (for echo and label removal).
    Every annotated question gets a row; IDs in `responses` without annotations fail.
    `rules`: 'polyculture' (the project's fixes) or 'official' (the official code's behaviour,
    a response that pandas reads as NA counting as missing); see the module docstring."""
    official = check_rules(rules) == "official"
    clean = clean_response_official if official else clean_response
    country = normalize_region(country)
    if language not in run_languages(country):
        raise InputError(
            f"{country}/{language}",
            f"language not asked for this country; expected {run_languages(country)}",
        )
    unknown = sorted(set(responses) - set(annotations))
    if unknown:
        raise InputError(
            f"{country}/{language}/{prompt_id}",
            f"{len(unknown)} response ID(s) have no annotation, e.g. {', '.join(unknown[:5])}",
        )
    local_language = BLEND_REGIONS[country]
    prompts = prompts or {}
    rows = []
    for qid, q in annotations.items():
        raw = responses.get(qid)
        read = None if official and raw in PANDAS_NA_STRINGS else raw
        cleaned = clean(read, prompts.get(qid, "")) if read is not None else None
        reason = skip_reason(q)
        match = None
        if reason is None and cleaned:
            match = match_question(q, cleaned, language, local_language, rules)
        valid = reason is None
        rows.append(
            {
                "ID": qid,
                "country": country,
                "language": language,
                "prompt_id": prompt_id,
                "valid": valid,
                "skip_reason": reason,
                "answered": bool(cleaned),
                "response": raw,
                "cleaned": cleaned,
                "match": (1 if match else 0) if valid else None,
                "weight": (match.weight if match else 0.0) if valid else None,
                "cluster_rank": match.rank if match else None,
                "cluster_count": match.count if match else None,
                "top_count": q.top_count if valid else None,
                "matched_answer": match.answer if match else None,
                "matched_via": match.via if match else None,
            }
        )
    return pl.DataFrame(rows, schema=PER_QUESTION_SCHEMA)


def summarize(per_question: pl.DataFrame) -> pl.DataFrame:
    """SEM-B, SEM-W (percent of valid questions) and counts per (country, language, prompt_id).

    n_answered: valid questions with a non-empty cleaned response; n_empty: with a response that
    is empty after cleaning; n_missing: with no response at all. A run with no valid question
    gets null scores."""
    valid = pl.col("valid")
    out = (
        per_question.group_by(["country", "language", "prompt_id"], maintain_order=True)
        .agg(
            n_valid=valid.sum().cast(pl.Int64),
            matched=pl.col("match").filter(valid).sum(),
            weight=pl.col("weight").filter(valid).sum(),
            n_answered=(valid & pl.col("answered")).sum().cast(pl.Int64),
            n_empty=(valid & pl.col("response").is_not_null() & ~pl.col("answered"))
            .sum()
            .cast(pl.Int64),
            n_missing=(valid & pl.col("response").is_null()).sum().cast(pl.Int64),
            n_questions=pl.len().cast(pl.Int64),
        )
        .with_columns(
            sem_b=pl.when(pl.col("n_valid") > 0).then(100 * pl.col("matched") / pl.col("n_valid")),
            sem_w=pl.when(pl.col("n_valid") > 0).then(100 * pl.col("weight") / pl.col("n_valid")),
        )
    )
    return (
        out.select(list(SCORE_SCHEMA)).cast(SCORE_SCHEMA).sort(["country", "language", "prompt_id"])
    )


# --------------------------------------------------------------------------- response tables


@cache
def _language_aliases() -> dict[str, str]:
    aliases = {code: code for code in iso639_1()}
    for code, name in iso639_1().items():
        aliases.setdefault(name.lower(), code)
    aliases.update(BLEND_LANGUAGE_NAMES)
    return aliases


def normalize_language(value: str) -> str | None:
    """ISO 639-1 code of a language given as a code or an English name ('Greek' → 'el')."""
    return _language_aliases().get(value.strip().lower())


def prepare_responses(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a response table (ID, country, language, response; optional prompt_id, prompt) and
    normalize country names and languages; errors name the file and the first bad row."""
    missing = [c for c in RESPONSE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            source,
            f"missing column(s) {', '.join(missing)}; expected {', '.join(RESPONSE_COLUMNS)} "
            "(optional: prompt_id, prompt)",
        )
    cols = [*RESPONSE_COLUMNS, *(c for c in ("prompt_id", "prompt") if c in df.columns)]
    df = df.select(cols).with_row_index("row", offset=1)
    df = df.with_columns(pl.col(c).cast(pl.String) for c in cols)
    if "prompt_id" not in df.columns:
        df = df.with_columns(prompt_id=pl.lit(""))
    df = df.with_columns(pl.col("prompt_id").fill_null(""))
    for col in ("ID", "country", "language"):
        bad = df.filter(pl.col(col).is_null() | (pl.col(col).str.strip_chars() == ""))
        if bad.height:
            raise InputError(source, f"row {bad['row'][0]}: column '{col}' is empty")
    countries, languages = [], []
    for row in df.select("row", "country", "language").iter_rows(named=True):
        country = normalize_region(row["country"])
        if country not in BLEND_REGIONS:
            raise InputError(
                source,
                f"row {row['row']}: country {row['country']!r} is not a BLEnD region "
                f"(expected one of {', '.join(BLEND_REGIONS)})",
            )
        lang = normalize_language(row["language"])
        if lang not in run_languages(country):
            raise InputError(
                source,
                f"row {row['row']}: language {row['language']!r} is not asked in {country} "
                f"(expected one of {', '.join(run_languages(country))})",
            )
        countries.append(country)
        languages.append(lang)
    df = df.with_columns(country=pl.Series(countries), language=pl.Series(languages))
    keys = ["ID", "country", "language", "prompt_id"]
    dup = df.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        rows = dup.filter(*(pl.col(k) == first[k] for k in keys))
        raise InputError(
            source,
            f"question {first['ID']} ({first['country']}, {first['language']}"
            f"{', ' + first['prompt_id'] if first['prompt_id'] else ''}) has more than one "
            f"response (rows {', '.join(map(str, rows['row'].to_list()))})",
        )
    return df


def run_keys(responses: pl.DataFrame) -> list[tuple[str, str, str]]:
    """Sorted (country, language, prompt_id) runs present in a prepared response table."""
    keys = responses.select("country", "language", "prompt_id").unique()
    return sorted(keys.iter_rows())


def score_responses(
    responses: pl.DataFrame,
    data_dir: str | Path,
    *,
    source: object = "responses",
    annotations: Mapping[str, Mapping[str, Question]] | None = None,
    rules: str = "polyculture",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score a response table against the BLEnD annotations in `data_dir` (`rules`: see
    :func:`score_run`).

    Returns (scores per country × language × prompt_id, per-question table). Prompt text for
    echo/label removal comes from a `prompt` column, else is rebuilt from the prompt templates
    in `data_dir` where the table names a `prompt_id` found there."""
    prepared = prepare_responses(responses, source)
    cache_ann: dict[str, Mapping[str, Question]] = dict(annotations or {})
    frames = []
    for country, language, prompt_id in run_keys(prepared):
        if country not in cache_ann:
            cache_ann[country] = load_annotations(annotations_path(data_dir, country))
        run = prepared.filter(
            (pl.col("country") == country)
            & (pl.col("language") == language)
            & (pl.col("prompt_id") == prompt_id)
        )
        ids = run["ID"].to_list()
        resp = dict(zip(ids, run["response"].to_list(), strict=True))
        if "prompt" in run.columns:
            prompt_text = {i: p for i, p in zip(ids, run["prompt"].to_list(), strict=True) if p}
        else:
            prompt_text = _rebuilt_prompts(data_dir, country, language, prompt_id)
        frames.append(
            score_run(
                cache_ann[country],
                resp,
                country=country,
                language=language,
                prompt_id=prompt_id,
                prompts=prompt_text,
                rules=rules,
            )
        )
    per_question = pl.concat(frames) if frames else pl.DataFrame(schema=PER_QUESTION_SCHEMA)
    return summarize(per_question), per_question


def _rebuilt_prompts(
    data_dir: str | Path, country: str, language: str, prompt_id: str
) -> dict[str, str]:
    """Prompt text per question ID from the data directory, or {} where it cannot be rebuilt."""
    qpath, ppath = questions_path(data_dir, country), prompts_path(data_dir, country)
    if not prompt_id or not qpath.is_file() or not ppath.is_file():
        return {}
    templates = load_prompt_templates(ppath)
    if prompt_id not in templates:
        return {}
    built = build_prompts(load_questions(qpath), templates, country, language, prompt_id)
    return dict(zip(built["ID"].to_list(), built["prompt"].to_list(), strict=True))


def format_scores(scores: pl.DataFrame) -> str:
    """A plain-text table of SEM-B / SEM-W / n valid per country, language and prompt."""
    header = f"{'country':<18}{'language':<10}{'prompt':<10}{'SEM-B':>8}{'SEM-W':>8}{'n_valid':>9}"
    lines = [header, "-" * len(header)]
    for r in scores.iter_rows(named=True):
        b = "n/a" if r["sem_b"] is None else f"{r['sem_b']:.2f}"
        w = "n/a" if r["sem_w"] is None else f"{r['sem_w']:.2f}"
        lines.append(
            f"{r['country']:<18}{r['language']:<10}{r['prompt_id'] or '-':<10}{b:>8}{w:>8}{r['n_valid']:>9}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- workflow steps

RESPONSE_SCHEMA = {
    k: pl.String
    for k in ("ID", "country", "language", "prompt_id", "question", "prompt", "response")
}


def select_questions(questions: pl.DataFrame, max_questions: int | None) -> pl.DataFrame:
    """The first `max_questions` questions in file order (all when None)."""
    return questions if max_questions is None else questions.head(max_questions)


PROMPT_FORMATS = ("chat", "raw")


def answer_prompts(
    generator: Any,
    prompts: pl.DataFrame,
    sampling: Any,
    *,
    group: str = "all",
    prompt_format: str = "chat",
) -> tuple[pl.DataFrame, DropCounter]:
    """Ask the model every prompt, one answer per prompt: as the one user turn of a conversation
    rendered by the model's chat template (`chat`), or as plain text without it (`raw`), the two
    ways BLEnD's code sends its prompts (chat models / base models and raw completion).

    Returns the prompt table with a `response` column and the drop counts: empty answers are
    counted as 'empty_response' but kept, since the benchmark scores them as wrong."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(
            "evaluate.blend.prompt_format",
            f"'{prompt_format}' is not one of {', '.join(PROMPT_FORMATS)}",
        )
    texts = prompts["prompt"].to_list()
    if not texts:
        outputs = []
    elif prompt_format == "raw":
        outputs = generator.generate_raw(texts, n=1, sampling=sampling)
    else:
        conversations = [[{"role": "user", "content": p}] for p in texts]
        outputs = generator.generate(conversations, n=1, sampling=sampling)
    if len(outputs) != prompts.height:
        raise RuntimeError(
            f"generator returned {len(outputs)} outputs for {prompts.height} prompts"
        )
    answers = [out[0] if out else "" for out in outputs]
    drops = DropCounter(stage="blend_generate", group=group)
    drops.seen(len(answers))
    empty = sum(1 for a in answers if not clean_response(a, ""))
    if empty:
        drops.drop("empty_response", empty)
    table = prompts.with_columns(response=pl.Series(answers, dtype=pl.String))
    return table.select(list(RESPONSE_SCHEMA)).cast(RESPONSE_SCHEMA), drops


def score_generations(
    responses: pl.DataFrame,
    data_dir: str | Path,
    *,
    max_questions: int | None = None,
    rules: str = "polyculture",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score the workflow's generated answers (all runs of one model) against the annotations
    of the questions that were asked (the first `max_questions` of each country, or all)."""
    annotations: dict[str, Mapping[str, Question]] = {}
    for country in sorted(set(responses["country"].to_list())):
        ann = load_annotations(annotations_path(data_dir, country))
        if max_questions is not None:
            asked = select_questions(
                load_questions(questions_path(data_dir, country)), max_questions
            )
            ids = set(asked["ID"].to_list())
            ann = {qid: q for qid, q in ann.items() if qid in ids}
        annotations[country] = ann
    return score_responses(
        responses, data_dir, source="generated answers", annotations=annotations, rules=rules
    )


BLEND_SUBDIRS = ("questions", "annotations", "prompts")


def fetch_blend(
    dataset: str, dest: str | Path, *, revision: str = "main", countries: Sequence[str] = ()
) -> Path:
    """Download the BLEnD release's data/{questions,annotations,prompts} files from a Hugging Face
    dataset repository into `dest` (the local layout) and check the countries' files are there.

    Only the release layout is read (the prompt templates are part of it); a repository without
    it fails naming what is missing and how to point the workflow at a local copy instead."""
    import shutil
    import tempfile

    from huggingface_hub import snapshot_download

    dest = Path(dest)
    patterns = [f"data/{sub}/*" for sub in BLEND_SUBDIRS]
    with tempfile.TemporaryDirectory() as tmp:
        snapshot_download(
            repo_id=dataset,
            repo_type="dataset",
            revision=revision,
            allow_patterns=patterns,
            local_dir=tmp,
        )
        for sub in BLEND_SUBDIRS:
            src = Path(tmp) / "data" / sub
            if not src.is_dir():
                raise InputError(
                    f"{dataset}@{revision}",
                    f"no data/{sub}/ folder: the repository does not hold the BLEnD release "
                    "layout (questions/, annotations/, prompts/ under data/); set "
                    "evaluate.blend.data_path to a copy of the release's data/ folder "
                    "(github.com/nlee0212/BLEnD) or hub_dataset to a repository that holds it",
                )
            shutil.copytree(src, dest / sub, dirs_exist_ok=True)
    for country in countries:
        for path in (
            questions_path(dest, country),
            annotations_path(dest, country),
            prompts_path(dest, country),
        ):
            if not path.is_file():
                raise InputError(
                    f"{dataset}@{revision}", f"{country}: {path.relative_to(dest)} is missing"
                )
    return dest
