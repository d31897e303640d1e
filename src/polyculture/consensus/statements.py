"""Cultural statements from CANDLE (JSONL) and CultureAtlas (CSV), filtered and normalised.

Every source becomes rows of (statement_id, source, country, topic, text); countries are mapped
onto canonical names (polyculture.consensus.countries). Filters follow the config: CANDLE
`combined_score` threshold and kept subject types (its `domain` column), at least
`min_per_country` statements per country, an optional seeded cap per country.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polyculture.consensus.countries import canonical_country
from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, InputError
from polyculture.io import check_columns, read_table

FORMATS = ("candle", "cultureatlas")

CANDLE_COLUMNS = ("subject", "domain", "facet", "assertion", "combined_score", "raw_sentences")
CULTUREATLAS_COLUMNS = ("Assertion", "Context1", "Context2", "Context3", "Country", "Titile", "Url")

STATEMENT_SCHEMA = {
    "statement_id": pl.String,
    "source": pl.String,
    "country": pl.String,
    "topic": pl.String,
    "text": pl.String,
}


def _plural_key(word: str) -> str:
    """'countries', 'Country' and 'country' compare equal."""
    w = word.strip().casefold()
    if w.endswith("ies"):
        return w[:-3] + "y"
    return w[:-1] if w.endswith("s") else w


def source_name(source: Mapping[str, Any], index: int) -> str:
    """Name of a configured source (its `name`, else its format and position)."""
    return str(source.get("name") or f"{source['format']}{index}")


def check_sources(sources: Sequence[Mapping[str, Any]]) -> None:
    """Each source has a known format, exactly one of path / url / hub, and a unique name."""
    if not sources:
        raise ConfigError("consensus.sources", "at least one statement source is needed")
    names: list[str] = []
    for i, src in enumerate(sources):
        key = f"consensus.sources[{i}]"
        if src.get("format") not in FORMATS:
            raise ConfigError(f"{key}.format", f"expected one of {', '.join(FORMATS)}")
        given = [k for k in ("path", "url", "hub") if src.get(k)]
        if len(given) != 1:
            raise ConfigError(key, f"give exactly one of path, url, hub (got {given or 'none'})")
        names.append(source_name(src, i))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("consensus.sources", f"source names must be unique; repeated: {dupes}")


def _suffix(fmt: str) -> str:
    return ".jsonl" if fmt == "candle" else ".csv"


def fetch_url(url: str, fmt: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Download `url` (http(s) or file://) into `cache_dir`; return the local file."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{zlib.crc32(url.encode()):08x}{_suffix(fmt)}"
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 (configured source)
            data = resp.read()
    except (OSError, ValueError) as exc:
        raise InputError(url, f"could not download the statement source: {exc}") from exc
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".part")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    return target


def load_hub(hub_id: str, split: str, subset: str | None) -> pl.DataFrame:
    """Load a split of a Hugging Face dataset as a polars table."""
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, subset, split=split)
    except Exception as exc:  # the hub client raises many kinds
        raise InputError(hub_id, f"could not load split '{split}' from the hub: {exc}") from exc
    if hasattr(ds, "to_polars"):
        return ds.to_polars()
    return pl.from_arrow(ds.data.table)  # type: ignore[return-value]


def load_source_table(
    source: Mapping[str, Any], cache_dir: str | os.PathLike[str], schema: Any = None
) -> tuple[pl.DataFrame, str]:
    """Read one configured source (path, url or hub) into a table, checked against the row
    schema of its format if given; return it and its origin for error messages."""
    fmt = source["format"]
    if source.get("hub"):
        df = load_hub(source["hub"], source.get("split", "train"), source.get("subset"))
        if schema is not None:
            check_columns(df, schema, source["hub"])
        return df, source["hub"]
    path = source.get("path") or fetch_url(source["url"], fmt, cache_dir)
    return read_table(path, schema), str(path)


def _country_and_text(
    raw_country: object,
    column: str,
    assertion: object,
    row: int,
    origin: str,
    on_unknown_country: str,
    drops: DropCounter,
) -> tuple[str, str] | None:
    """The canonical country that row `row` (0-based) names in `column`, and its statement text
    stripped; None, counted as a drop, when the country is unknown (an error under
    `on_unknown_country: error`) or the text empty."""
    country = canonical_country(raw_country) if isinstance(raw_country, str) else None
    if country is None:
        if on_unknown_country == "error":
            raise InputError(
                origin,
                f"row {row + 1}: {column} {raw_country!r} is not a known country (set "
                "consensus.on_unknown_country: drop to skip such rows, or fix the name)",
            )
        drops.drop("unknown_country")
        return None
    text = assertion.strip() if isinstance(assertion, str) else ""
    if not text:
        drops.drop("empty_text")
        return None
    return country, text


def candle_statements(
    df: pl.DataFrame,
    origin: str,
    *,
    name: str,
    min_combined_score: float,
    subject_types: Sequence[str],
    on_unknown_country: str,
    drops: DropCounter,
) -> pl.DataFrame:
    """Statements from CANDLE rows: score and subject-type filters, countries canonicalised."""
    check_columns(df, {"properties": {c: {} for c in CANDLE_COLUMNS}}, origin)
    kinds = {_plural_key(t) for t in subject_types}
    rows: list[dict[str, str]] = []
    drops.seen(df.height)
    for i, rec in enumerate(
        df.select("subject", "domain", "facet", "assertion", "combined_score").iter_rows()
    ):
        subject, domain, facet, assertion, score = rec
        if not isinstance(domain, str) or _plural_key(domain) not in kinds:
            drops.drop("subject_type_not_kept")
            continue
        try:
            score_value = float(score)
        except (TypeError, ValueError):
            raise InputError(
                origin, f"row {i + 1}: combined_score {score!r} is not a number"
            ) from None
        if score_value < min_combined_score:
            drops.drop("combined_score_below_threshold")
            continue
        found = _country_and_text(
            subject, "subject", assertion, i, origin, on_unknown_country, drops
        )
        if found is None:
            continue
        country, text = found
        facet_name = facet.strip() if isinstance(facet, str) and facet.strip() else "culture"
        rows.append(
            {
                "statement_id": f"{name}-{i:06d}",
                "source": name,
                "country": country,
                "topic": f"{facet_name} of {subject.strip()}",
                "text": text,
            }
        )
    return pl.DataFrame(rows, schema=STATEMENT_SCHEMA)


def cultureatlas_statements(
    df: pl.DataFrame,
    origin: str,
    *,
    name: str,
    on_unknown_country: str,
    drops: DropCounter,
) -> pl.DataFrame:
    """Statements from CultureAtlas rows (Assertion, Country, Titile [sic] as the topic)."""
    check_columns(df, {"properties": {c: {} for c in CULTUREATLAS_COLUMNS}}, origin)
    rows: list[dict[str, str]] = []
    drops.seen(df.height)
    for i, (assertion, country_raw, title) in enumerate(
        df.select("Assertion", "Country", "Titile").iter_rows()
    ):
        found = _country_and_text(
            country_raw, "Country", assertion, i, origin, on_unknown_country, drops
        )
        if found is None:
            continue
        country, text = found
        topic = (
            title.strip() if isinstance(title, str) and title.strip() else f"culture of {country}"
        )
        rows.append(
            {
                "statement_id": f"{name}-{i:06d}",
                "source": name,
                "country": country,
                "topic": topic,
                "text": text,
            }
        )
    return pl.DataFrame(rows, schema=STATEMENT_SCHEMA)


def apply_country_filters(
    df: pl.DataFrame,
    *,
    min_per_country: int,
    max_per_country: int | None,
    seed: int,
    drops: DropCounter,
) -> pl.DataFrame:
    """Drop duplicate texts per country, countries with fewer than `min_per_country` statements,
    and cap each country at `max_per_country` statements (a seeded sample, order kept)."""
    before = df.height
    df = df.unique(subset=["country", "text"], keep="first", maintain_order=True)
    if df.height < before:
        drops.drop("duplicate_statement", before - df.height)
    counts = df.group_by("country").len()
    small = set(counts.filter(pl.col("len") < min_per_country)["country"].to_list())
    if small:
        n_small = df.filter(pl.col("country").is_in(small)).height
        drops.drop("below_min_per_country", n_small)
        df = df.filter(~pl.col("country").is_in(small))
    if max_per_country is not None:
        keep: list[int] = []
        idx = df.with_row_index("_row")
        for country in sorted(set(df["country"].to_list())):
            rows = idx.filter(pl.col("country") == country)["_row"].to_numpy()
            if rows.size > max_per_country:
                rng = np.random.default_rng([seed, zlib.crc32(country.encode())])
                rows = np.sort(rng.choice(rows, size=max_per_country, replace=False))
                drops.drop(
                    "above_max_per_country",
                    int(idx.filter(pl.col("country") == country).height - max_per_country),
                )
            keep.extend(int(r) for r in rows)
        df = idx.filter(pl.col("_row").is_in(sorted(keep))).drop("_row")
    return df


def ingest(
    tables: Sequence[tuple[Mapping[str, Any], pl.DataFrame, str]],
    *,
    min_combined_score: float,
    subject_types: Sequence[str],
    min_per_country: int,
    max_per_country: int | None,
    on_unknown_country: str,
    seed: int,
) -> tuple[pl.DataFrame, DropCounter]:
    """All sources' statements, filtered; `tables` holds (source config, table, origin) triples."""
    drops = DropCounter(stage="ingest_statements")
    parts: list[pl.DataFrame] = []
    for i, (src, df, origin) in enumerate(tables):
        if df.height == 0:
            raise InputError(origin, "the statement source has no rows")
        name = source_name(src, i)
        if src["format"] == "candle":
            part = candle_statements(
                df,
                origin,
                name=name,
                min_combined_score=min_combined_score,
                subject_types=subject_types,
                on_unknown_country=on_unknown_country,
                drops=drops,
            )
        else:
            part = cultureatlas_statements(
                df, origin, name=name, on_unknown_country=on_unknown_country, drops=drops
            )
        parts.append(part)
    out = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=STATEMENT_SCHEMA)
    out = apply_country_filters(
        out,
        min_per_country=min_per_country,
        max_per_country=max_per_country,
        seed=seed,
        drops=drops,
    )
    if out.height == 0:
        raise InputError(
            ", ".join(origin for _, _, origin in tables),
            "no statement is left after the filters "
            f"({', '.join(f'{r}: {n}' for r, n in sorted(drops.reasons.items()))})",
        )
    return out, drops
