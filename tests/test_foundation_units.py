"""Units of the foundation library: io, drops, model specs, languages, config checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from polyculture import config_check, io
from polyculture.backends.spec import classify_model_spec, resolve_model_spec
from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, DropRateError, InputError, ModelSpecError
from polyculture.languages import BLEND_REGIONS, is_language_code, language_name, normalize_region

ROW_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "score": {"type": "number"}, "n": {"type": "integer"}},
    "required": ["id", "score"],
}


def test_read_table_checks_columns_and_types(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("id,score,n\na,0.5,1\nb,1.0,2\n", encoding="utf-8")
    assert io.read_table(good, ROW_SCHEMA).height == 2

    missing = tmp_path / "missing.csv"
    missing.write_text("id,n\na,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"missing\.csv: missing column\(s\) 'score'"):
        io.read_table(missing, ROW_SCHEMA)

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,score\na,high\n", encoding="utf-8")
    with pytest.raises(InputError, match="column 'score' has type String, expected number"):
        io.read_table(wrong, ROW_SCHEMA)


def test_read_table_rejects_empty_and_non_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.csv: file is empty"):
        io.read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,score\n", encoding="utf-8")
    with pytest.raises(InputError, match="table has no rows"):
        io.read_table(header_only, ROW_SCHEMA)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,score\nSão,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.csv: not valid UTF-8"):
        io.read_table(latin1)
    with pytest.raises(InputError, match="does not exist"):
        io.read_table(tmp_path / "absent.parquet")


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n', encoding="utf-8")
    with pytest.raises(InputError, match="x.jsonl: line 3 is not valid JSON"):
        io.read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is a JSON list, expected an object"):
        io.read_jsonl(p)


def test_atomic_writers_leave_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")

    def records():
        yield {"a": 1}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        io.write_jsonl(records(), target)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]

    df = pl.DataFrame({"a": [1, 2]})
    io.write_parquet(df, tmp_path / "t.parquet")
    first = (tmp_path / "t.parquet").read_bytes()
    io.write_parquet(df, tmp_path / "t.parquet")
    assert (tmp_path / "t.parquet").read_bytes() == first
    io.write_json({"b": 1, "a": "é"}, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == {"a": "é", "b": 1}


def test_output_set_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    good = pl.DataFrame({"id": ["a"], "score": [0.5]})
    bad = pl.DataFrame({"id": ["a"]})  # lacks the required 'score'
    old = tmp_path / "old.json"
    old.write_text("old\n", encoding="utf-8")

    # a bad second table: neither table, nor the JSON staged before it, is written
    missing = r"second\.parquet: missing column\(s\) 'score'"
    with pytest.raises(InputError, match=missing), io.write_outputs() as out:
        out.table(good, tmp_path / "first.parquet", ROW_SCHEMA)
        out.json({"a": 1}, old)
        out.table(bad, tmp_path / "second.parquet", ROW_SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    assert old.read_text(encoding="utf-8") == "old\n"

    # a drop rate above the limit (checked once the drop table is staged) discards the set
    kept, lossy = DropCounter(stage="parse", group="a"), DropCounter(stage="parse", group="b")
    kept.seen(4)
    lossy.seen(2)
    lossy.drop("no_list", 2)
    with pytest.raises(DropRateError, match=r"\(b\) dropped 2 of 2"), io.write_outputs() as out:
        out.table(good, tmp_path / "first.parquet", ROW_SCHEMA)
        out.drops([kept, lossy], tmp_path / "drops.parquet", 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    # any other error in the block discards the set too
    with pytest.raises(RuntimeError, match="interrupted"), io.write_outputs() as out:
        out.text("x", tmp_path / "x.txt")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    with io.write_outputs() as out:  # no limit: the drop table alone
        out.drops([kept, lossy], tmp_path / "drops.parquet", None)
    drops = pl.read_parquet(tmp_path / "drops.parquet")
    assert drops.select("group", "reason", "dropped", "total").rows() == [
        ("a", "none", 0, 4), ("b", "no_list", 2, 2)
    ]  # fmt: skip
    (tmp_path / "drops.parquet").unlink()

    with io.write_outputs() as out:
        out.table(good, tmp_path / "t.parquet", ROW_SCHEMA)
        assert not (tmp_path / "t.parquet").exists()  # staged, not yet in place
        out.tsv(good, tmp_path / "t.tsv", float_precision=2)
        assert out.jsonl(({"n": i, "é": "ü"} for i in range(3)), tmp_path / "r.jsonl") == 3
        out.json({"b": 1, "a": "é"}, old)
        out.file(tmp_path / "sub" / "own.bin").write_bytes(b"\x00\x01")
        with pytest.raises(ValueError, match="added twice"):
            out.text("x", tmp_path / "t.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "old.json", "r.jsonl", "sub", "t.parquet", "t.tsv"
    ]  # fmt: skip
    assert pl.read_parquet(tmp_path / "t.parquet").equals(good)
    assert (tmp_path / "t.tsv").read_text(encoding="utf-8") == "id\tscore\na\t0.50\n"
    assert io.read_jsonl(tmp_path / "r.jsonl")[2] == {"n": 2, "é": "ü"}
    assert json.loads(old.read_text(encoding="utf-8")) == {"a": "é", "b": 1}
    assert (tmp_path / "sub" / "own.bin").read_bytes() == b"\x00\x01"
    plain = tmp_path / "plain"
    plain.write_text("")
    assert (tmp_path / "t.parquet").stat().st_mode == plain.stat().st_mode


@pytest.mark.parametrize("n_items,n_shards", [(0, 3), (10, 3), (7, 7), (5, 8)])
def test_shard_bounds_partition_the_rows(n_items: int, n_shards: int) -> None:
    covered = []
    for s in range(n_shards):
        start, stop = io.shard_bounds(n_items, s, n_shards)
        covered.extend(range(start, stop))
    assert covered == list(range(n_items))
    with pytest.raises(ValueError):
        io.shard_bounds(n_items, n_shards, n_shards)


def test_drop_counter_rate_and_limit() -> None:
    c = DropCounter(stage="parse", group="m/da")
    c.seen(10)
    c.drop("no_list")
    c.drop("wrong_language", 2)
    frame = c.to_frame()
    assert frame["dropped"].to_list() == [1, 2]
    assert frame["total"].to_list() == [10, 10]
    c.check(0.3)
    with pytest.raises(
        DropRateError, match=r"dropped 3 of 10 items \(30.0%\).*no_list: 1, wrong_language: 2"
    ):
        c.check(0.25)
    assert DropCounter(stage="x").to_frame()["reason"].to_list() == ["none"]


def test_model_specs(tmp_path: Path) -> None:
    assert classify_model_spec("builtin:tiny-chat") == "builtin"
    assert resolve_model_spec("builtin:tiny-embed", "results/models") == "results/models/tiny-embed"
    assert classify_model_spec("meta-llama/Llama-3.1-8B-Instruct") == "hub"
    assert classify_model_spec(str(tmp_path)) == "path"
    with pytest.raises(ModelSpecError, match="unknown built-in model 'huge'"):
        classify_model_spec("builtin:huge")
    with pytest.raises(ModelSpecError, match="the directory does not exist"):
        classify_model_spec(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelSpecError, match="neither a Hugging Face id"):
        classify_model_spec("not a model")


def test_languages() -> None:
    assert is_language_code("da") and not is_language_code("xx")
    assert language_name("el") == "Modern Greek (1453-)"
    assert len(BLEND_REGIONS) == 16 and normalize_region("South Korea") == "South_Korea"
    assert all(is_language_code(code) for code in BLEND_REGIONS.values())


def test_config_checks_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config key 'wvs\.languages': 'xx' is not an ISO 639-1"):
        config_check.check_languages({"wvs": {"languages": ["en", "xx"]}})
    with pytest.raises(
        ConfigError, match=r"config key 'wvs\.microdata_path': '.*absent.csv' does not exist"
    ):
        config_check.check_paths(
            {"wvs": {"microdata_path": str(tmp_path / "absent.csv")}}, tmp_path
        )
    with pytest.raises(
        ConfigError, match=r"config key 'consensus\.generator': model spec 'builtin:big'"
    ):
        config_check.check_model_specs({"consensus": {"generator": "builtin:big"}})
    with pytest.raises(ConfigError, match=r"eval_models\[1\]\.adapter"):
        config_check.check_eval_models(
            {
                "train": {"variants": ["full"]},
                "eval_models": [
                    {"name": "a", "model": "x/y"},
                    {"name": "b", "model": "x/y", "adapter": "other"},
                ],
            }
        )
    with pytest.raises(ConfigError, match="translator.model"):
        config_check.check_translator({"translator": {"kind": "nllb"}})
    google = {"translator": {"kind": "google"}}
    with pytest.raises(ConfigError, match="translator.kind.*GOOGLE_API_KEY"):
        config_check.check_translator(google, environ={"GOOGLE_API_KEY": "  "})
    config_check.check_translator(google, environ={"GOOGLE_API_KEY": "a-key"})
    # no translating stage group runs: no translator is needed
    off = {"pipelines": {"consensus": False, "wvs": False}}
    config_check.check_translator({**google, **off}, environ={})


def test_builtin_models_used_are_the_ones_named(repo_root: Path) -> None:
    cfg = {
        "consensus": {"generator": "builtin:tiny-chat", "embedder": "Qwen/Qwen3-Embedding-0.6B"},
        "eval_models": [{"name": "a", "model": "builtin:tiny-chat"}],
    }
    assert config_check.builtin_models_used(cfg) == ["tiny-chat"]
    demo = yaml.safe_load((repo_root / "config.yaml").read_text(encoding="utf-8"))
    assert config_check.builtin_models_used(demo) == ["tiny-chat", "tiny-embed"]
    paper = yaml.safe_load((repo_root / "configs" / "paper-consensus.yaml").read_text("utf-8"))
    assert config_check.builtin_models_used(paper) == []


def test_schema_defaults_are_filled_inside_referenced_sections(repo_root: Path) -> None:
    cfg: dict = {"seed": 1, "backend": {"batch_size": 4}}
    config_check.validate_config(cfg, repo_root / "schemas" / "config.schema.yaml")
    assert cfg["backend"]["batch_size"] == 4  # given values stay
    assert cfg["backend"]["generation"] == "auto"  # a default inside a $ref'd section
    assert cfg["translator"]["kind"] == "llm"
    assert cfg["pipelines"] == {
        k: True for k in ("consensus", "train", "evaluate", "wvs", "alignment")
    }


@pytest.mark.parametrize(
    ("key", "value", "named_key", "rule"),
    [
        ("bogus", 1, "(top level)", "'bogus' was unexpected"),
        ("eval_models", [{"name": "a", "model": "m", "bogus": 1}], "eval_models[0]", "'bogus'"),
        ("backend", {"batch_size": 0}, "backend.batch_size", "less than the minimum of 1"),
    ],
)
def test_validate_config_names_the_key_at_fault(
    repo_root: Path, key: str, value: object, named_key: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_check.validate_config(
            {"seed": 1, key: value}, repo_root / "schemas" / "config.schema.yaml"
        )
    assert caught.value.key == named_key
    assert rule in str(caught.value) and "config.schema.yaml" in str(caught.value)


def test_validate_config_sets_what_snakemake_validate_sets(repo_root: Path) -> None:
    """Every preset: the top-level defaults that snakemake.utils.validate sets are the same, and
    nothing it accepts is rejected."""
    from snakemake.utils import validate

    schema = repo_root / "schemas" / "config.schema.yaml"
    for path in [repo_root / "config.yaml", *sorted((repo_root / "configs").glob("*.yaml"))]:
        theirs = yaml.safe_load(path.read_text(encoding="utf-8"))
        ours = copy.deepcopy(theirs)
        validate(theirs, str(schema), set_default=True)
        config_check.validate_config(ours, schema)
        assert _contains(ours, theirs), path.name


def _contains(bigger: object, smaller: object) -> bool:
    """Every key of `smaller`, at any depth, is in `bigger` with the same value."""
    if isinstance(smaller, dict):
        return isinstance(bigger, dict) and all(
            k in bigger and _contains(bigger[k], v) for k, v in smaller.items()
        )
    if isinstance(smaller, list):
        return (
            isinstance(bigger, list)
            and len(bigger) == len(smaller)
            and all(_contains(b, s) for b, s in zip(bigger, smaller, strict=True))
        )
    return bigger == smaller


def test_inline_schema_refs_reads_each_file_once(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    load = config_check.read_yaml
    monkeypatch.setattr(config_check, "read_yaml", lambda p: reads.append(p) or load(p))
    schema_dir = repo_root / "schemas"
    config_check.inline_schema_refs(load(schema_dir / "config.schema.yaml"), schema_dir)
    assert reads and len(reads) == len(set(reads))
    assert schema_dir.resolve() / "definitions.schema.yaml" in reads


def test_inline_schema_refs_resolves_files_and_pointers(tmp_path: Path) -> None:
    (tmp_path / "defs.yaml").write_text(
        "$defs:\n  code: {type: string, default: en}\n", encoding="utf-8"
    )
    schema = {"properties": {"lang": {"$ref": "defs.yaml#/$defs/code", "description": "d"}}}
    inlined = config_check.inline_schema_refs(schema, tmp_path)
    assert inlined["properties"]["lang"] == {"type": "string", "default": "en", "description": "d"}
