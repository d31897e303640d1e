"""Value polarity of survey populations (stage 1) and the human self-consistency band.

Microdata (the joint EVS/WVS file or any file with its layout) in CSV/TSV, Parquet, Stata
``.dta`` or SPSS ``.sav`` is reduced to coded answers, then to polarity scores:

- :func:`read_microdata` reads the country, language and weight columns and one column per
  topic (names matched case-insensitively: ``F118`` in the file is topic ``f118``).
- :func:`code_answers` turns raw answer codes into one row per valid answer with ``pro`` (1 if
  the code is affirmative for the topic, else 0). Negative codes and empty cells are missing;
  codes outside the topic's valid set are counted as out of scale and treated as missing; codes
  in the topic's ``exclude`` list are missing. Neutral answers (the middle of an odd scale) are
  valid and not affirmative, so they stay in the denominator, as published. The respondent's
  weight is the product of the configured weight columns (gwght × pwght by default); rows with
  a missing or non-positive weight, or without a country, are dropped and counted.
- :func:`assign_languages` gives every respondent a language: the respondent's own language
  column (``lnge_iso``) where present and a valid ISO 639-1 code, else the country → language
  map (``language_from``: ``auto`` | ``respondent`` | ``country``).
- :func:`polarity_table` computes polarity = Σ w·pro / Σ w over the valid answers of a group,
  at three levels: ``country``, ``language`` and ``global`` (all respondents).
- :func:`human_consistency` draws respondents repeatedly (seeded, with probability ∝ weight,
  ``draw_size`` valid answers per topic and draw; 0 = as many as the group has), computes each
  draw's polarity vector over topics and the Pearson correlation of every pair of distinct
  draws (no draw is paired with itself); :func:`consistency_summary` gives the band.

Tables written by rule ``wvs_polarity`` (read by the alignment stages):

- ``{RESULTS}/wvs/polarity.parquet``: level ('country' | 'language' | 'global'), group
  (country code, language code, or 'global'), question_key (lower-case EVS/WVS variable code),
  polarity (float in [0, 1]), n_valid (int: valid answers), weight_sum (float: Σ w), and
  n_affirmative (int: affirmative answers, unweighted).
- ``{RESULTS}/wvs/human_consistency.parquet``: level, group, draw_a, draw_b (draw_a < draw_b),
  pearson (null where a draw's vector is constant), n_topics.
- ``{RESULTS}/wvs/human_consistency_summary.parquet``: level, group, n_draws, draw_size,
  n_topics, n_pairs, n_undefined, mean, std, q025, median, q975.
- ``{RESULTS}/wvs/country_languages.parquet``: country, language, name.
- ``{RESULTS}/wvs/microdata_summary.parquet``: question_key, column, n_rows, n_missing,
  n_excluded, n_out_of_scale, n_valid, n_affirmative.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.languages import is_language_code
from polyculture.wvs.topics import Topic

log = logging.getLogger(__name__)

LEVELS = ("country", "language", "global")
POLARITY_SCHEMA = {
    "level": pl.String,
    "group": pl.String,
    "question_key": pl.String,
    "polarity": pl.Float64,
    "n_valid": pl.Int64,
    "weight_sum": pl.Float64,
    "n_affirmative": pl.Int64,
}
LANGUAGE_SOURCES = ("auto", "respondent", "country")


@dataclass(frozen=True)
class MicrodataColumns:
    """Names of the microdata's non-topic columns (defaults: the joint EVS/WVS file's)."""

    country: str = "cntry_AN"
    language: str | None = "lnge_iso"
    weights: tuple[str, ...] = ("gwght", "pwght")


@dataclass
class MicrodataRead:
    """Microdata reduced to country, language, weight and topic columns, with row counts."""

    frame: pl.DataFrame
    path: str
    has_language: bool
    column_of: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


def _format(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in (
        (".csv.gz", "csv"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".dta", "dta"),
        (".sav", "sav"),
        (".zsav", "sav"),
    ):
        if name.endswith(suffix):
            return kind
    raise InputError(
        path, "unsupported microdata format (expected .csv, .tsv, .parquet, .dta, .sav or .zsav)"
    )


def microdata_header(path: str | os.PathLike[str]) -> list[str]:
    """Column names of a microdata file without reading its rows."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "microdata file does not exist")
    kind = _format(p)
    try:
        if kind in ("csv", "tsv"):
            sep = "\t" if kind == "tsv" else ","
            return pl.read_csv(p, separator=sep, n_rows=0, infer_schema=False).columns
        if kind == "parquet":
            return list(pl.read_parquet_schema(p))
        import pyreadstat

        reader = pyreadstat.read_dta if kind == "dta" else pyreadstat.read_sav
        _, meta = reader(str(p), metadataonly=True)
        return list(meta.column_names)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(p, f"could not be read as {kind} microdata: {exc}") from exc


def _read_columns(path: Path, names: Sequence[str]) -> pl.DataFrame:
    kind = _format(path)
    try:
        if kind in ("csv", "tsv"):
            sep = "\t" if kind == "tsv" else ","
            return pl.read_csv(path, separator=sep, columns=list(names), infer_schema=False)
        if kind == "parquet":
            return pl.read_parquet(path, columns=list(names))
        import pyreadstat

        reader = pyreadstat.read_dta if kind == "dta" else pyreadstat.read_sav
        df, _ = reader(str(path), usecols=list(names), apply_value_formats=False)
        return pl.from_pandas(df, nan_to_null=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(path, f"could not be read as {kind} microdata: {exc}") from exc


def _numeric(df: pl.DataFrame, column: str, path: Path) -> pl.Series:
    """A column as Float64 (NaN → null); text that is not a number fails naming the column."""
    s = df[column]
    if s.dtype == pl.String:
        stripped = s.str.strip_chars()
        s = pl.Series(column, stripped.replace("", None))
        converted = s.cast(pl.Float64, strict=False)
        bad = s.is_not_null() & converted.is_null()
        if bad.any():
            row = int(bad.arg_max())  # type: ignore[arg-type]
            raise InputError(
                path,
                f"column '{column}' row {row + 1}: {s[row]!r} is not a number "
                "(expected numeric answer codes or weights)",
            )
        s = converted
    elif s.dtype == pl.Boolean or not s.dtype.is_numeric():
        raise InputError(path, f"column '{column}' has type {s.dtype}, expected numbers")
    s = s.cast(pl.Float64)
    return s.fill_nan(None)


def read_microdata(
    path: str | os.PathLike[str], topics: Sequence[Topic], columns: MicrodataColumns
) -> MicrodataRead:
    """Read the country, language, weight and topic columns of a microdata file.

    Returns a frame with columns ``country`` (str), ``language`` (str or null, the respondent's
    own language column where the file has it), ``weight`` (float, product of the weight
    columns) and one Float64 column per topic key (raw codes, null where empty). Fails naming
    the file and column when a weight, the country or a topic column is missing; rows without
    a country or with a missing or non-positive weight are dropped and counted.
    """
    p = Path(path)
    header = microdata_header(p)
    by_lower: dict[str, str] = {}
    for name in header:
        by_lower.setdefault(name.lower(), name)

    def find(name: str, what: str) -> str:
        actual = by_lower.get(name.lower())
        if actual is None:
            raise InputError(
                p,
                f"{what} column '{name}' not found (matched case-insensitively); "
                f"the file has {len(header)} columns, e.g. {', '.join(header[:12])}",
            )
        return actual

    if not columns.weights:
        raise ConfigError("wvs.weight_columns", "name at least one weight column")
    country_col = find(columns.country, "country")
    weight_cols = [find(w, "weight") for w in columns.weights]
    language_col = by_lower.get(columns.language.lower()) if columns.language else None
    topic_cols: dict[str, str] = {}
    missing_topics = [t.key for t in topics if t.key.lower() not in by_lower]
    if missing_topics:
        raise InputError(
            p,
            f"no column for topic(s) {', '.join(missing_topics)} (variable codes are matched "
            "case-insensitively, e.g. 'F118' for topic f118); check wvs.topics against the file",
        )
    for t in topics:
        topic_cols[t.key] = by_lower[t.key.lower()]
    wanted = [country_col, *weight_cols, *([language_col] if language_col else [])]
    wanted += [c for c in topic_cols.values() if c not in wanted]
    raw = _read_columns(p, list(dict.fromkeys(wanted)))
    if raw.height == 0:
        raise InputError(p, "microdata file has no rows")

    country = raw[country_col].cast(pl.String).str.strip_chars()
    country = country.replace("", None)
    weight = pl.Series("weight", np.ones(raw.height))
    for col in weight_cols:
        weight = weight * _numeric(raw, col, p)
    data: dict[str, pl.Series] = {
        "country": country.alias("country"),
        "language": (
            raw[language_col].cast(pl.String).str.strip_chars().alias("language")
            if language_col
            else pl.Series("language", [None] * raw.height, dtype=pl.String)
        ),
        "weight": weight.alias("weight"),
    }
    for key, col in topic_cols.items():
        data[key] = _numeric(raw, col, p).alias(key)
    frame = pl.DataFrame(data)
    no_country = frame["country"].is_null()
    bad_weight = ~no_country & (frame["weight"].is_null() | (frame["weight"] <= 0))
    dropped = {"no_country": int(no_country.sum()), "bad_weight": int(bad_weight.sum())}
    frame = frame.filter(~no_country & ~bad_weight)
    if frame.height == 0:
        raise InputError(
            p,
            f"no respondent has a country ('{country_col}') and a positive weight "
            f"({' × '.join(weight_cols)})",
        )
    return MicrodataRead(
        frame=frame,
        path=str(p),
        has_language=language_col is not None,
        column_of=topic_cols,
        dropped=dropped,
    )


def normalize_language(code: str | None) -> str | None:
    """ISO 639-1 code of a language cell ('EN', 'en-US', 'da_DK' → 'en', 'da'); None if invalid."""
    if code is None:
        return None
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return base if is_language_code(base) else None


def assign_languages(
    frame: pl.DataFrame,
    country_languages: pl.DataFrame,
    language_from: str = "auto",
    *,
    has_language: bool = True,
) -> pl.DataFrame:
    """Set each respondent's ``language``: own language column and/or the country map.

    ``respondent`` uses only the respondent's language column (an error when the file has
    none); ``country`` only the country → language map; ``auto`` the respondent's column where
    it holds a valid ISO 639-1 code, else the map. Respondents left without a language keep a
    null language and take no part in the language level.
    """
    if language_from not in LANGUAGE_SOURCES:
        raise ConfigError("wvs.language_from", f"expected one of {', '.join(LANGUAGE_SOURCES)}")
    if language_from == "respondent" and not has_language:
        raise ConfigError(
            "wvs.language_from",
            "'respondent' needs the microdata's language column (wvs.language_column), "
            "which the file lacks",
        )
    own = frame["language"].map_elements(normalize_language, return_dtype=pl.String)
    mapping = dict(
        zip(
            country_languages["country"].to_list(),
            country_languages["language"].to_list(),
            strict=True,
        )
    )
    mapped = frame["country"].replace_strict(mapping, default=None, return_dtype=pl.String)
    if language_from == "respondent":
        lang = own
    elif language_from == "country":
        lang = mapped
    else:
        lang = own.fill_null(mapped)
    return frame.with_columns(lang.alias("language"))


def code_answers(frame: pl.DataFrame, topics: Sequence[Topic]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Coded answers (one row per valid answer) and per-topic counts of the raw codes.

    Answers: respondent (row index), country, language, weight, question_key, code (int),
    pro (Int8: 1 affirmative, 0 not). Summary: question_key, n_rows, n_missing, n_excluded,
    n_out_of_scale, n_valid, n_affirmative.
    """
    parts: list[pl.DataFrame] = []
    summary: list[dict[str, object]] = []
    base = frame.select("country", "language", "weight").with_row_index("respondent")
    for t in topics:
        codes = frame[t.key]
        arr = codes.to_numpy()
        present = ~np.isnan(arr) if arr.dtype.kind == "f" else np.ones(len(arr), bool)
        missing = ~present | (np.nan_to_num(arr, nan=-1.0) < 0)
        whole = present & (np.mod(np.nan_to_num(arr, nan=0.5), 1.0) == 0)
        code_int = np.where(whole & ~missing, np.nan_to_num(arr, nan=0.0), -1).astype(np.int64)
        valid_set = np.array(sorted(t.valid), dtype=np.int64)
        excl_extra = np.array(sorted(set(range(1, t.scale + 1)) - t.valid), dtype=np.int64)
        valid = ~missing & whole & np.isin(code_int, valid_set)
        excluded = ~missing & whole & np.isin(code_int, excl_extra)
        out_of_scale = ~missing & ~valid & ~excluded
        pro = np.isin(code_int, np.array(sorted(t.affirmative), dtype=np.int64)) & valid
        summary.append(
            {
                "question_key": t.key,
                "n_rows": len(arr),
                "n_missing": int(missing.sum()),
                "n_excluded": int(excluded.sum()),
                "n_out_of_scale": int(out_of_scale.sum()),
                "n_valid": int(valid.sum()),
                "n_affirmative": int(pro.sum()),
            }
        )
        parts.append(
            base.filter(pl.Series(valid)).with_columns(
                pl.lit(t.key).alias("question_key"),
                pl.Series("code", code_int[valid]),
                pl.Series("pro", pro[valid].astype(np.int8)),
            )
        )
    answers = pl.concat(parts, how="vertical") if parts else pl.DataFrame()
    return answers, pl.DataFrame(summary)


def check_answered(summary: pl.DataFrame, source: object) -> None:
    """Fail naming the topics for which the microdata holds no valid answer at all."""
    empty = summary.filter(pl.col("n_valid") == 0)["question_key"].to_list()
    if empty:
        raise InputError(
            source,
            f"no valid answers for topic(s) {', '.join(empty)} (every code is missing, "
            "excluded or outside the topic's scale); drop them from wvs.topics or check the "
            "topic table's scale",
        )


def _group_polarity(answers: pl.DataFrame, level: str, key: str | None) -> pl.DataFrame:
    """Weighted pro share per (group, topic), summed in a fixed row order (deterministic)."""
    if key is None:
        df = answers.with_columns(pl.lit("global").alias("group"))
    else:
        df = answers.filter(pl.col(key).is_not_null()).with_columns(pl.col(key).alias("group"))
    if df.height == 0:
        return pl.DataFrame(schema=POLARITY_SCHEMA)
    df = df.sort("group", "question_key", "respondent")
    ids = df.select(pl.struct("group", "question_key").rank("dense").cast(pl.Int64) - 1)
    idx = ids.to_series().to_numpy()
    w = df["weight"].to_numpy()
    pro = df["pro"].to_numpy().astype(np.float64)
    n_cells = int(idx.max()) + 1
    weight_sum = np.bincount(idx, weights=w, minlength=n_cells)
    pro_sum = np.bincount(idx, weights=w * pro, minlength=n_cells)
    n_valid = np.bincount(idx, minlength=n_cells)
    n_aff = np.bincount(idx, weights=pro, minlength=n_cells)
    keys = df.select("group", "question_key").with_columns(pl.Series("cell", idx))
    keys = keys.unique("cell", keep="first", maintain_order=True).sort("cell")
    return pl.DataFrame(
        {
            "level": [level] * n_cells,
            "group": keys["group"],
            "question_key": keys["question_key"],
            "polarity": pro_sum / weight_sum,
            "n_valid": n_valid.astype(np.int64),
            "weight_sum": weight_sum,
            "n_affirmative": np.rint(n_aff).astype(np.int64),
        },
        schema=POLARITY_SCHEMA,
    )


def polarity_table(answers: pl.DataFrame, min_valid: int = 1) -> pl.DataFrame:
    """Polarity per level × group × topic; cells with fewer than `min_valid` answers are left out."""
    frames = [
        _group_polarity(answers, "country", "country"),
        _group_polarity(answers, "language", "language"),
        _group_polarity(answers, "global", None),
    ]
    table = pl.concat(frames, how="vertical")
    return table.filter(pl.col("n_valid") >= max(min_valid, 1))


def _seed_for(seed: int, level: str, group: str) -> np.random.Generator:
    parts = [seed, zlib.crc32(level.encode()), zlib.crc32(group.encode())]
    return np.random.default_rng(np.random.SeedSequence(parts))


def draw_polarities(
    pro: Mapping[str, np.ndarray],
    weight: Mapping[str, np.ndarray],
    n_draws: int,
    draw_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """`n_draws` × topics matrix of polarity in respondent draws (probability ∝ weight).

    Each draw picks `draw_size` valid answers per topic with replacement (0: as many as the topic
    has) and takes their plain pro share; weights enter through the draw probabilities.
    """
    out = np.empty((n_draws, len(pro)), dtype=np.float64)
    for j, key in enumerate(pro):
        p = weight[key] / weight[key].sum()
        size = draw_size or len(p)
        picks = rng.choice(len(p), size=(n_draws, size), replace=True, p=p)
        out[:, j] = pro[key][picks].mean(axis=1)
    return out


def pairwise_pearson(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson r of every pair of distinct rows (a < b); NaN where a row is constant."""
    n = draws.shape[0]
    centred = draws - draws.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centred @ centred.T) / np.outer(norms, norms)
    a, b = np.triu_indices(n, k=1)
    r = np.clip(corr[a, b], -1.0, 1.0)
    r[(norms[a] == 0) | (norms[b] == 0)] = np.nan
    return a, b, r


def human_consistency(
    answers: pl.DataFrame,
    *,
    n_draws: int,
    draw_size: int,
    seed: int,
    min_topics: int = 3,
) -> pl.DataFrame:
    """Pearson correlation between repeated respondent draws, per level × group, no self-pairs.

    Groups are those of :func:`polarity_table` (countries, languages, global); a group takes
    part with the topics it has answers for, when there are at least `min_topics` of them.
    """
    if n_draws < 2:
        raise ConfigError("wvs.human_consistency.n_draws", "needs at least 2 draws to pair")
    if draw_size < 0:
        raise ConfigError("wvs.human_consistency.draw_size", "must be 0 (full size) or positive")
    rows: list[pl.DataFrame] = []
    for level, key in (("country", "country"), ("language", "language"), ("global", None)):
        df = answers if key is None else answers.filter(pl.col(key).is_not_null())
        groups = ["global"] if key is None else sorted(df[key].unique().to_list())
        for group in groups:
            sub = df if key is None else df.filter(pl.col(key) == group)
            sub = sub.sort("question_key", "respondent")
            pro: dict[str, np.ndarray] = {}
            weight: dict[str, np.ndarray] = {}
            for (qk,), part in sub.group_by(["question_key"], maintain_order=True):
                pro[str(qk)] = part["pro"].to_numpy().astype(np.float64)
                weight[str(qk)] = part["weight"].to_numpy()
            if len(pro) < min_topics:
                log.info("human consistency: %s %s has %d topics, skipped", level, group, len(pro))
                continue
            draws = draw_polarities(pro, weight, n_draws, draw_size, _seed_for(seed, level, group))
            a, b, r = pairwise_pearson(draws)
            rows.append(
                pl.DataFrame(
                    {
                        "level": [level] * len(a),
                        "group": [group] * len(a),
                        "draw_a": a.astype(np.int64),
                        "draw_b": b.astype(np.int64),
                        "pearson": pl.Series(r).fill_nan(None),
                        "n_topics": [len(pro)] * len(a),
                    },
                    schema={
                        "level": pl.String,
                        "group": pl.String,
                        "draw_a": pl.Int64,
                        "draw_b": pl.Int64,
                        "pearson": pl.Float64,
                        "n_topics": pl.Int64,
                    },
                )
            )
    if not rows:
        raise InputError("microdata", f"no group has answers to at least {min_topics} topics")
    return pl.concat(rows, how="vertical")


def consistency_summary(pairs: pl.DataFrame, n_draws: int, draw_size: int) -> pl.DataFrame:
    """The band per level × group: mean, std and 2.5/50/97.5 % quantiles of the pair correlations."""
    return (
        pairs.group_by("level", "group", maintain_order=True)
        .agg(
            pl.col("n_topics").first(),
            pl.len().alias("n_pairs"),
            pl.col("pearson").null_count().alias("n_undefined"),
            pl.col("pearson").mean().alias("mean"),
            pl.col("pearson").std().alias("std"),
            pl.col("pearson").quantile(0.025, "linear").alias("q025"),
            pl.col("pearson").median().alias("median"),
            pl.col("pearson").quantile(0.975, "linear").alias("q975"),
        )
        .with_columns(
            pl.lit(n_draws, dtype=pl.Int64).alias("n_draws"),
            pl.lit(draw_size, dtype=pl.Int64).alias("draw_size"),
            pl.col("n_pairs").cast(pl.Int64),
            pl.col("n_undefined").cast(pl.Int64),
        )
        .select(
            "level",
            "group",
            "n_draws",
            "draw_size",
            "n_topics",
            "n_pairs",
            "n_undefined",
            "mean",
            "std",
            "q025",
            "median",
            "q975",
        )
    )


def microdata_polarity(
    path: str | os.PathLike[str],
    topics: Sequence[Topic],
    columns: MicrodataColumns,
    country_languages: pl.DataFrame,
    *,
    language_from: str = "auto",
    min_valid: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read, code and aggregate microdata: (polarity table, coded answers, per-topic summary)."""
    read = read_microdata(path, topics, columns)
    for reason, n in read.dropped.items():
        if n:
            log.info("%s: dropped %d respondent rows (%s)", path, n, reason)
    frame = assign_languages(
        read.frame, country_languages, language_from, has_language=read.has_language
    )
    answers, summary = code_answers(frame, topics)
    summary = summary.with_columns(
        pl.col("question_key")
        .replace_strict(read.column_of, return_dtype=pl.String)
        .alias("column")
    ).select("question_key", "column", pl.exclude("question_key", "column"))
    check_answered(summary, path)
    return polarity_table(answers, min_valid), answers, summary
