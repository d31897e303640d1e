"""BLEnD scoring: matching a response to the annotation clusters, SEM-B / SEM-W of a run, and
scoring response tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from polyculture.blend.cleaning import (
    check_rules,
    clean_response,
    clean_response_official,
    lemma_tokens,
    normalize_text,
    official_tokens,
)
from polyculture.blend.data import (
    Question,
    annotations_path,
    load_annotations,
    load_prompt_templates,
    load_questions,
    prompts_path,
    questions_path,
)
from polyculture.blend.prompts import build_prompts, run_languages, select_questions, skip_reason
from polyculture.errors import InputError
from polyculture.languages import BLEND_REGIONS, iso639_1, normalize_region

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
