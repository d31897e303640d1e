"""Reading inputs with schema checks; writers that never leave a half-written file or set of files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from polyculture.drops import DropCounter, concat_drops
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


def _temp_beside(target: Path) -> Path:
    """An empty hidden temporary file in `target`'s folder (so the final rename stays on one
    file system), with the mode a plain open() would give it, not mkstemp's owner-only one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    return Path(tmp_name)


class OutputSet:
    """The outputs of one job, written together: each file is checked and written to a
    temporary file beside its target when it is added, and all of them are moved into place
    only when the :func:`write_outputs` block that made the set ends without an error. A failing
    schema check, drop-rate check or writer anywhere in the block leaves every target as it was
    (absent or old): never a half-written set of outputs."""

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}

    def file(self, path: str | os.PathLike[str]) -> Path:
        """A temporary path for `path`, for a writer of its own (e.g. a figure); it becomes
        `path` when the set is committed (as an empty file if the writer wrote nothing). Each
        target may be added once."""
        target = Path(path)
        if target in self._staged:
            raise ValueError(f"{target}: added twice to one set of outputs")
        self._staged[target] = _temp_beside(target)
        return self._staged[target]

    def table(self, df: pl.DataFrame, path: str | os.PathLike[str], schema: Any) -> None:
        """Check `df` against a row schema (file or mapping), then stage it as Parquet: the one
        checked writer of every stage's tables."""
        check_columns(df, schema, path)
        self.parquet(df, path)

    def parquet(self, df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
        """Stage a Parquet table (deterministic: no statistics timestamps)."""
        df.write_parquet(self.file(path), compression="zstd", statistics=False)

    def drops(
        self,
        counters: Sequence[DropCounter],
        path: str | os.PathLike[str],
        max_rate: float | None,
    ) -> None:
        """Stage the drop counts of one stage (one or more groups) as one table, then check each
        group's drop rate against `max_rate` (None: no limit): a rate above it discards the set."""
        self.parquet(concat_drops([c.to_frame() for c in counters]), path)
        if max_rate is not None:
            for counter in counters:
                counter.check(max_rate)

    def jsonl(self, records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
        """Stage records as JSON Lines (keys sorted, UTF-8); return the number written."""
        n = 0
        with open(self.file(path), "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
        return n

    def json(self, obj: Any, path: str | os.PathLike[str]) -> None:
        """Stage one JSON document, keys sorted, UTF-8."""
        self.text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", path)

    def text(self, text: str, path: str | os.PathLike[str]) -> None:
        """Stage a UTF-8 text file."""
        self.file(path).write_text(text, encoding="utf-8")

    def tsv(
        self, df: pl.DataFrame, path: str | os.PathLike[str], float_precision: int | None = None
    ) -> None:
        """Stage a table as tab-separated text with a header row."""
        self.text(df.write_csv(separator="\t", float_precision=float_precision), path)

    def _commit(self) -> None:
        """Move every staged file onto its target, in the order they were added."""
        for target, tmp in self._staged.items():
            os.replace(tmp, target)
        self._staged.clear()

    def _discard(self) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def write_outputs() -> Iterator[OutputSet]:
    """A set of outputs that appear together or not at all (see :class:`OutputSet`): in
    `with write_outputs() as out:` a script stages its tables (`out.table` checks each against its
    schema first), drop counts and other files, then runs its drop-rate checks; an error anywhere
    in the block leaves none of the files written."""
    out = OutputSet()
    try:
        yield out
        out._commit()
    finally:
        out._discard()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    with write_outputs() as out:
        yield out.file(path)


@contextmanager
def atomic_dir(target: str | os.PathLike[str], *, fixed_modes: bool = False) -> Iterator[Path]:
    """Yield a new temporary directory beside `target` (same file system); when the block ends
    without an error it replaces `target` (an old `target` is removed), otherwise it is removed
    and `target` is left as it was. The directory gets the mode a plain mkdir gives (mkdtemp's
    0700 would hide it from other users of results/); with `fixed_modes` every directory under
    it gets 0755 and every file 0644, whatever the libraries that wrote them chose."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        if fixed_modes:
            for p in (tmp, *tmp.rglob("*")):
                p.chmod(0o755 if p.is_dir() else 0o644)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a Parquet table atomically (deterministic: no statistics timestamps)."""
    with write_outputs() as out:
        out.parquet(df, path)


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write records as JSON Lines atomically; return the number written."""
    with write_outputs() as out:
        return out.jsonl(records, path)


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write one JSON document atomically, keys sorted, UTF-8."""
    with write_outputs() as out:
        out.json(obj, path)


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write a text file atomically."""
    with write_outputs() as out:
        out.text(text, path)


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


#: PyYAML's safe loader, with libyaml's parser where PyYAML was built with it (several times
#: faster; the config schemas are read at every start of the workflow, i.e. in every cluster job).
SAFE_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML document, naming the file and position of a syntax error."""
    text = read_text_utf8(path)
    try:
        return yaml.load(text, Loader=SAFE_YAML_LOADER)  # noqa: S506 (a safe loader)
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
    """Check `df` against a row schema (file or mapping), then write it as Parquet atomically
    (one table; several outputs of a job: :func:`write_outputs`)."""
    with write_outputs() as out:
        out.table(df, path, schema)


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
