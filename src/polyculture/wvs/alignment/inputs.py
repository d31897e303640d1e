"""The analysis inputs: checks of the response, ground-truth and country-language tables, and
the per-cell arrays (model x language x group) that every statistic reads."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from polyculture.errors import InputError

LEVELS = ("country", "language", "global", "merged")


# columns (and their types) of the canonical response and ground-truth tables
RESPONSE_SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "language": pl.String,
    "question_key": pl.String,
    "response_id": pl.String,
    "pro_score": pl.Float64,
}


GROUND_TRUTH_SCHEMA = {
    "level": pl.String,
    "group": pl.String,
    "question_key": pl.String,
    "polarity": pl.Float64,
}


RESPONSE_COLUMNS = tuple(RESPONSE_SCHEMA)


GROUND_TRUTH_COLUMNS = tuple(GROUND_TRUTH_SCHEMA)


COUNTRY_LANGUAGE_COLUMNS = ("country", "language")


FloatArray = npt.NDArray[np.float64]


IntArray = npt.NDArray[np.int64]


def require_columns(df: pl.DataFrame, columns: Sequence[str], source: object) -> None:
    """Fail naming `source` when `df` lacks any of `columns`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            source,
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected columns: {', '.join(columns)}; found: {', '.join(df.columns) or 'none'}",
        )


def _first_bad_row(df: pl.DataFrame, bad: pl.Expr) -> int | None:
    idx = df.with_row_index("_row").filter(bad)["_row"]
    return int(idx[0]) if idx.len() else None


def _first_duplicate(df: pl.DataFrame, *keys: str) -> dict[str, Any] | None:
    """The first row whose `keys` another row shares, or None when the keys are unique."""
    dup = df.filter(pl.struct(*keys).is_duplicated())
    return dup.row(0, named=True) if dup.height else None


def check_responses(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a canonical response table; return it with its columns in canonical order and type.

    Polarity must lie in [0, 1] and be finite; keys must not be null. Errors name the row
    (0-based, as read) and the column.
    """
    require_columns(df, RESPONSE_COLUMNS, source)
    out = df.select(
        *(pl.col(c).cast(pl.String) for c in RESPONSE_COLUMNS[:5]),
        pl.col("pro_score").cast(pl.Float64, strict=False),
    )
    for c in RESPONSE_COLUMNS:
        row = _first_bad_row(out, pl.col(c).is_null())
        if row is not None:
            raise InputError(source, f"row {row}: column '{c}' is empty (expected a value)")
    row = _first_bad_row(
        out, ~pl.col("pro_score").is_between(0.0, 1.0) | pl.col("pro_score").is_nan()
    )
    if row is not None:
        raise InputError(
            source,
            f"row {row}: pro_score {out['pro_score'][row]} is outside [0, 1] "
            "(expected pro / (pro + con) of one response)",
        )
    r = _first_duplicate(out, "model", "language", "response_id")
    if r is not None:
        raise InputError(
            source,
            f"response_id '{r['response_id']}' occurs more than once for model '{r['model']}', "
            f"language '{r['language']}' (expected one row per response)",
        )
    fam = out.group_by("model").agg(pl.col("family").n_unique().alias("n")).filter(pl.col("n") > 1)
    if fam.height:
        raise InputError(source, f"model '{fam['model'][0]}' has more than one family")
    return out


def check_ground_truth(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a canonical ground-truth table (known levels, polarity in [0, 1], no duplicates)."""
    require_columns(df, GROUND_TRUTH_COLUMNS, source)
    out = df.select(
        pl.col("level").cast(pl.String),
        pl.col("group").cast(pl.String),
        pl.col("question_key").cast(pl.String).str.to_lowercase(),
        pl.col("polarity").cast(pl.Float64, strict=False),
    ).filter(pl.col("polarity").is_not_null() & pl.col("polarity").is_not_nan())
    bad = out.filter(~pl.col("level").is_in(LEVELS))
    if bad.height:
        raise InputError(
            source, f"unknown level '{bad['level'][0]}' (expected one of {', '.join(LEVELS)})"
        )
    row = _first_bad_row(out, ~pl.col("polarity").is_between(0.0, 1.0))
    if row is not None:
        raise InputError(source, f"polarity {out['polarity'][row]} is outside [0, 1]")
    r = _first_duplicate(out, "level", "group", "question_key")
    if r is not None:
        raise InputError(
            source,
            f"two polarities for level '{r['level']}', group '{r['group']}', "
            f"topic '{r['question_key']}' (expected one)",
        )
    return out


def check_country_languages(df: pl.DataFrame, source: object) -> pl.DataFrame:
    """Check a country → language table (country codes upper case, one language per country)."""
    require_columns(df, COUNTRY_LANGUAGE_COLUMNS, source)
    out = df.select(
        pl.col("country").cast(pl.String).str.strip_chars(),
        pl.col("language").cast(pl.String).str.strip_chars().str.to_lowercase(),
    ).unique(maintain_order=True)
    dup = out.filter(pl.col("country").is_duplicated())
    if dup.height:
        raise InputError(source, f"country '{dup['country'][0]}' has more than one language")
    return out


@dataclass(frozen=True)
class Cell:
    """The responses of one model in one language, sorted by topic."""

    model: str
    family: str
    language: str
    topic: IntArray  # index into AnalysisData.topics, per response (sorted)
    value: FloatArray  # polarity per response
    counts: IntArray  # responses per topic (length K)
    starts: IntArray  # first row of each topic (length K)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.family, self.language)

    @property
    def n(self) -> int:
        return int(self.value.size)


@dataclass
class AnalysisData:
    """Responses by cell and ground truth by (level, group), over one shared topic list."""

    topics: list[str]
    cells: list[Cell]
    ground_truth: dict[tuple[str, str], FloatArray]
    country_languages: dict[str, str] = field(default_factory=dict)

    def groups(self, cell: Cell, levels: Sequence[str] = LEVELS) -> list[tuple[str, str]]:
        """(level, group) pairs a cell is compared with: every group of the levels, except that
        the released merged ground truth only applies to its own language."""
        out = []
        for level, group in sorted(self.ground_truth):
            if level not in levels:
                continue
            if level == "merged" and group != cell.language:
                continue
            out.append((level, group))
        return out

    def local_countries(self, language: str) -> list[str]:
        """Countries whose language is `language` and that have ground truth."""
        have = {g for (lvl, g) in self.ground_truth if lvl == "country"}
        return sorted(
            c for c, lang in self.country_languages.items() if lang == language and c in have
        )


def build_analysis_data(
    responses: pl.DataFrame,
    ground_truth: pl.DataFrame,
    country_languages: pl.DataFrame | None = None,
) -> AnalysisData:
    """Arrange canonical tables for the bootstrap engine (cells sorted by model, language)."""
    topics = sorted(responses["question_key"].unique().to_list())
    tindex = {t: i for i, t in enumerate(topics)}
    k = len(topics)
    cells: list[Cell] = []
    for (model, family, language), part in sorted(
        responses.group_by(["model", "family", "language"]), key=lambda kv: kv[0]
    ):
        part = part.with_columns(
            pl.col("question_key").replace_strict(tindex, return_dtype=pl.Int64).alias("_t")
        ).sort(["_t", "response_id"])
        t = part["_t"].to_numpy().astype(np.int64)
        counts = np.bincount(t, minlength=k).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        cells.append(
            Cell(
                str(model),
                str(family),
                str(language),
                t,
                part["pro_score"].to_numpy().astype(np.float64),
                counts,
                starts,
            )
        )
    gt: dict[tuple[str, str], FloatArray] = {}
    for (level, group), part in ground_truth.group_by(["level", "group"]):
        vec = np.full(k, np.nan)
        for q, p in zip(part["question_key"].to_list(), part["polarity"].to_list(), strict=True):
            if q in tindex:
                vec[tindex[q]] = p
        if np.isfinite(vec).any():
            gt[(str(level), str(group))] = vec
    cl = (
        {}
        if country_languages is None
        else dict(
            zip(
                country_languages["country"].to_list(),
                country_languages["language"].to_list(),
                strict=True,
            )
        )
    )
    return AnalysisData(topics, cells, gt, cl)


def load_analysis_data(
    responses_path: str | os.PathLike[str],
    ground_truth_path: str | os.PathLike[str],
    country_languages_path: str | os.PathLike[str] | None = None,
) -> AnalysisData:
    """:func:`build_analysis_data` of the canonical tables the alignment_inputs rule writes."""
    responses = check_responses(pl.read_parquet(responses_path), responses_path)
    gt = check_ground_truth(pl.read_parquet(ground_truth_path), ground_truth_path)
    cl = None
    if country_languages_path is not None:
        cl = check_country_languages(
            pl.read_parquet(country_languages_path), country_languages_path
        )
    return build_analysis_data(responses, gt, cl)


def summarise_cells(data: AnalysisData) -> pl.DataFrame:
    """Responses and topics per cell (model, family, language, n_responses, n_topics)."""
    return pl.DataFrame(
        [
            {
                "model": c.model,
                "family": c.family,
                "language": c.language,
                "n_responses": c.n,
                "n_topics": int((c.counts > 0).sum()),
            }
            for c in data.cells
        ],
        schema={
            "model": pl.String,
            "family": pl.String,
            "language": pl.String,
            "n_responses": pl.Int64,
            "n_topics": pl.Int64,
        },
    )


def iter_groups(mapping: Mapping[tuple[str, str], FloatArray], level: str) -> Iterator[str]:
    """Groups of one level that have ground truth."""
    return (g for (lvl, g) in sorted(mapping) if lvl == level)
