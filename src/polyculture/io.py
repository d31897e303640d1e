"""Reading inputs with schema checks; writers that never leave half-written files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from polyculture.errors import InputError

_POLARS_KINDS: dict[str, tuple[type, ...]] = {
    "string": (pl.String, pl.Categorical, pl.Enum),
    "integer": (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64),
    "number": (
        pl.Float32,
        pl.Float64,
        pl.Int8,
        pl.Int16,
        pl.Int32,
        pl.Int64,
        pl.UInt8,
        pl.UInt16,
        pl.UInt32,
        pl.UInt64,
    ),
    "boolean": (pl.Boolean,),
    "array": (pl.List, pl.Array),
}


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file owner-only; give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a Parquet table atomically (deterministic: no statistics timestamps)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=False)


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write records as JSON Lines atomically; return the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write one JSON document atomically, keys sorted, UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", "utf-8"
        )


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_text_utf8(path: str | os.PathLike[str]) -> str:
    """Read a whole text file, failing with the file name when it is missing or not UTF-8."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            p, f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8"
        ) from exc


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read JSON Lines; every non-blank line must be a JSON object (errors name the line)."""
    text = read_text_utf8(path)
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"line {lineno} is not valid JSON ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise InputError(
                path, f"line {lineno} is a JSON {type(value).__name__}, expected an object"
            )
        records.append(value)
    return records


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML document, naming the file and position of a syntax error."""
    text = read_text_utf8(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML: {exc}") from exc


def load_table_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a table schema: a JSON Schema (YAML) describing one row as an object."""
    schema = read_yaml(path)
    if not isinstance(schema, dict) or "properties" not in schema:
        raise InputError(path, "a table schema needs 'properties' (one entry per column)")
    return schema


def _read_any(p: Path) -> pl.DataFrame:
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix == ".parquet":
        return pl.read_parquet(p)
    if suffix in (".csv", ".tsv"):
        read_text_utf8(p)
        return pl.read_csv(
            p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10000
        )
    if suffix in (".jsonl", ".ndjson"):
        records = read_jsonl(p)
        return pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    if suffix == ".json":
        data = json.loads(read_text_utf8(p))
        if not isinstance(data, list):
            raise InputError(p, "a .json table must be a list of row objects")
        return pl.DataFrame(data, infer_schema_length=None) if data else pl.DataFrame()
    raise InputError(
        p, f"unsupported table format '{p.suffix}' (expected .parquet, .csv, .tsv, .jsonl or .json)"
    )


def read_table(
    path: str | os.PathLike[str],
    schema: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    allow_empty: bool = False,
) -> pl.DataFrame:
    """Read a table (Parquet, CSV, TSV, JSONL, JSON) and check it against a row schema.

    Fails with the file name when the file is missing, not UTF-8, empty (unless allowed),
    lacks a required column, or holds a column of the wrong kind.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file does not exist")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty")
    try:
        df = _read_any(p)
    except InputError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputError(p, f"could not be read as a table: {exc}") from exc
    if df.height == 0 and not allow_empty:
        if schema is not None:
            check_columns(df, schema, p, check_types=False)
        raise InputError(p, "table has no rows")
    if schema is not None:
        check_columns(df, schema, p, check_types=df.height > 0)
    return df


def check_columns(
    df: pl.DataFrame,
    schema: Mapping[str, Any] | str | os.PathLike[str],
    source: object,
    *,
    check_types: bool = True,
) -> None:
    """Check that `df` has the schema's required columns, each of the declared kind."""
    if not isinstance(schema, Mapping):
        schema = load_table_schema(schema)
    props: Mapping[str, Any] = schema.get("properties", {})
    required: Sequence[str] = schema.get("required", list(props))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            source,
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected columns: {', '.join(props)}",
        )
    if not check_types:
        return
    for col, spec in props.items():
        if col not in df.columns or df[col].dtype == pl.Null:
            continue
        kinds = spec.get("type")
        if kinds is None:
            continue
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        allowed = tuple(t for k in kinds if k != "null" for t in _POLARS_KINDS.get(k, ()))
        if allowed and not isinstance(df[col].dtype, allowed):
            raise InputError(
                source, f"column '{col}' has type {df[col].dtype}, expected {'/'.join(kinds)}"
            )


def write_table(df: pl.DataFrame, path: str | os.PathLike[str], schema: Any) -> None:
    """Check `df` against a row schema (file or mapping), then write it as Parquet atomically:
    the one checked writer of every stage's tables."""
    check_columns(df, schema, path)
    write_parquet(df, path)


def read_parts(paths: Sequence[str | os.PathLike[str]], schema: Any) -> pl.DataFrame:
    """Several Parquet parts (shards) with the same row schema, stacked in the given order;
    empty parts allowed (all empty: an empty table with the first part's columns)."""
    if not paths:
        raise ValueError("read_parts needs at least one path")
    parts = [read_table(p, schema, allow_empty=True) for p in paths]
    nonempty = [p for p in parts if p.height]
    if not nonempty:
        return parts[0].clear()
    return pl.concat(nonempty, how="vertical_relaxed")


def shard_bounds(n_items: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous [start, stop) rows of shard `shard` of `n_shards` over `n_items` rows."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    base, extra = divmod(n_items, n_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)
