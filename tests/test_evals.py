"""Benchmarks as folders (polyculture.evals): discovery, settings and their errors, the generic
aggregates and the paired comparison over per-item score tables, the summaries, and
`polyculture score`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyculture.cli import main
from polyculture.compare import Pair
from polyculture.errors import ConfigError
from polyculture.evals import benchmark_entries, benchmark_names, load_benchmark
from polyculture.evals.base import EVALS_DIR, deep_merge
from polyculture.evals.tables import aggregate, compare, compare_benchmark, score_benchmark

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo" / "blend"


def test_every_folder_with_settings_and_module_is_a_benchmark() -> None:
    assert "blend-mcq" in benchmark_names()
    for name in benchmark_names():
        spec = load_benchmark(name)
        assert spec.headline in spec.metrics and spec.groups
        assert (spec.folder / "README.md").is_file(), f"{name}: no README.md"


def test_bad_benchmark_folders_fail_naming_the_key_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate.benchmarks.*'nope' is not a benchmark"):
        load_benchmark("nope", root=tmp_path)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ConfigError, match=r"bare/benchmark.yaml does not exist"):
        load_benchmark("bare", root=tmp_path)
    folder = tmp_path / "copy"
    shutil.copytree(EVALS_DIR / "blend_mcq", folder)
    (folder / "__init__.py").unlink()
    with pytest.raises(ConfigError, match=r"copy/__init__.py does not exist \(its scorer\)"):
        load_benchmark("copy", root=tmp_path)
    (folder / "__init__.py").write_text("")
    with pytest.raises(ConfigError, match="name is 'blend-mcq', its folder says 'copy'"):
        load_benchmark("copy", root=tmp_path)
    with pytest.raises(ConfigError, match="headline.metric"):
        load_benchmark("blend-mcq", {"headline": {"metric": "f1"}})
    with pytest.raises(ConfigError, match=r"evaluate.benchmarks\[1\].*listed twice"):
        benchmark_entries(["blend-mcq", {"name": "blend-mcq"}])
    # BLEnD short answers run through the workflow's own rules (both would write evaluate/blend/)
    with pytest.raises(
        ConfigError, match=r"evaluate.benchmarks\[1\].*configured in evaluate.blend"
    ):
        benchmark_entries(["blend-mcq", "blend"])


def test_overrides_merge_key_by_key() -> None:
    spec = load_benchmark("blend-mcq", {"generation": {"sampling": {"max_new_tokens": 8}}})
    assert spec.settings["generation"]["sampling"] == {"temperature": 0, "max_new_tokens": 8}
    assert spec.settings["generation"]["prompt_format"] == "chat"
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": [1]}) == {
        "a": {"b": 1, "c": 3},
        "d": [1],
    }


SPEC = load_benchmark(
    "blend-mcq", {"data": {"path": str(DEMO)}, "groups": {"values": ["US", "Greece"]}}
)


def scores_of(values: dict[str, list[float]]) -> pl.DataFrame:
    rows = [
        {"item_id": f"{g}-{i}", "group": g, "dropped": v < 0, "accuracy": max(v, 0.0)}
        for g, vs in values.items()
        for i, v in enumerate(vs)
    ]
    return pl.DataFrame(rows)


def test_aggregate_gives_groups_macro_and_pooled() -> None:
    s = scores_of({"US": [1, 1, 0, 0], "Greece": [1, -1]})
    agg = {r["group"]: r for r in aggregate(s, SPEC, "m").iter_rows(named=True)}
    assert agg["US"]["score"] == 50 and agg["Greece"]["score"] == 50
    assert agg["All"]["score"] == 50  # mean of the groups
    assert agg["All (pooled)"]["score"] == pytest.approx(100 * 3 / 6)
    assert agg["All"]["n"] == 6 and agg["All"]["dropped"] == 1 and agg["Greece"]["dropped"] == 1


def test_compare_pairs_models_with_results_and_notes_the_rest() -> None:
    model = scores_of({"US": [1, 1, 1, 0], "Greece": [1, 1]})
    base = scores_of({"US": [0, 1, 0, 0], "Greece": [0, 1]})
    pairs = [Pair("a", "b", "full"), Pair("c", "b", "random")]
    table, notes = compare({"a": model, "b": base}, pairs, SPEC, n_boot=200, seed=1, alpha=0.05)
    assert notes == ["c vs b is not compared on blend-mcq: no results of c there"]
    rows = {r["group"]: r for r in table.iter_rows(named=True)}
    assert rows["US"]["delta"] == pytest.approx(50) and rows["Greece"]["delta"] == pytest.approx(50)
    assert rows["All"]["delta"] == pytest.approx(50)
    assert rows["All (pooled)"]["delta"] == pytest.approx(100 * 3 / 6)
    assert rows["All"]["ci_low"] <= 50 <= rows["All"]["ci_high"] and rows["All"]["n"] == 6
    same, _ = compare({"a": base, "b": base}, pairs[:1], SPEC, n_boot=200, seed=1, alpha=0.05)
    assert np.allclose(same["delta"].to_numpy(), 0)


def test_summaries_hold_headline_groups_n_and_differences(tmp_path: Path) -> None:
    files = {}
    for name, vals in {
        "a": {"US": [1, 1, 1, 0], "Greece": [1, 1]},
        "b": {"US": [0, 1, 0, 0], "Greece": [0, 1]},
    }.items():
        files[name] = tmp_path / f"{name}.parquet"
        scores_of(vals).write_parquet(files[name])
    result = compare_benchmark(
        SPEC,
        files,
        [{"model": "a", "base": "b", "variant": "full"}],
        n_boot=200,
        seed=1,
        alpha=0.05,
    )
    doc = json.loads(json.dumps(result.summary))
    assert doc["headline"]["by_model"] == {"a": pytest.approx(87.5), "b": pytest.approx(37.5)}
    assert "macro mean over country (US, Greece)" in doc["headline"]["aggregation"]
    assert {c["group"] for c in doc["comparisons"]} == {"US", "Greece", "All", "All (pooled)"}
    md = result.markdown
    assert "| a | 87.5 | 83.3 | 75.0 | 100.0 | 0 |" in md
    assert "| n | 6 | 6 | 4 | 2 |  |" in md
    assert "| a | b | All | +50.0 |" in md


def test_score_takes_responses_from_anywhere(tmp_path: Path) -> None:
    items = SPEC.implementation().items(SPEC.settings)
    first = items.row(0, named=True)
    with pytest.raises(Exception, match="does not have"):
        score_benchmark(SPEC, items, pl.DataFrame({"item_id": ["x"], "response": ["A"]}), "m")
    responses = tmp_path / "mc-res.csv"
    # the official response file's columns (MCQID, full_res)
    pl.DataFrame(
        {
            "MCQID": [first["item_id"]],
            "full_res": [json.dumps({"answer_choice": first["answer_idx"]})],
        }
    ).write_csv(responses)
    out = tmp_path / "scores.parquet"
    rc = main(
        [
            "score", "--benchmark", "blend-mcq", "--data", str(DEMO), "--groups", "US,Greece",
            "--responses", str(responses), "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    scores = pl.read_parquet(out)
    assert scores.height == items.height
    assert scores.filter(pl.col("item_id") == first["item_id"])["accuracy"].to_list() == [1.0]
    assert scores["dropped"].sum() == items.height - 1
    assert main(["score", "--benchmark", "nope", "--responses", str(responses)]) == 2


def test_model_card_and_run_summary_rows_from_benchmark_summaries(tmp_path: Path) -> None:
    from polyculture.model_card import benchmarks_section
    from polyculture.summary import benchmarks_section as summary_section

    files = {}
    for name, vals in {
        "a": {"US": [1, 1, 1, 0], "Greece": [1, 1]},
        "b": {"US": [0, 1, 0, 0], "Greece": [0, 1]},
    }.items():
        files[name] = tmp_path / f"{name}.parquet"
        scores_of(vals).write_parquet(files[name])
    result = compare_benchmark(
        SPEC,
        files,
        [{"model": "a", "base": "b", "variant": "full"}],
        n_boot=200,
        seed=1,
        alpha=0.05,
    )
    doc = json.loads(json.dumps(result.summary))
    card = benchmarks_section([doc], "a", "b")
    assert "| blend-mcq | accuracy | 87.5 | 37.5 | +50.0 [" in card
    assert benchmarks_section([doc], "c", "b") == ""
    path = tmp_path / "blend-mcq" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    text = summary_section([path])
    assert "| blend-mcq | a | 87.5 | 6 | 0 | +50.0 vs b (p " in text
    assert "| blend-mcq | b | 37.5 | 6 | 0 | – |" in text


def test_config_check_names_a_benchmark_problem(tmp_path: Path, capsys) -> None:
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    entry = config["evaluate"]["benchmarks"][0]
    entry["data"]["path"] = str(DEMO)
    entry["groups"]["values"] = ["US", "Spain"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    assert main(["check", "--configfile", str(bad), "--workflow", str(REPO)]) == 1
    assert "evaluate.benchmarks[blend-mcq].groups.values': Spain" in capsys.readouterr().err


def test_an_api_model_answers_a_benchmark_through_the_chat_format(tmp_path: Path) -> None:
    """Generation goes through any generator: here the openai backend against a loopback
    OpenAI-compatible server that always answers {"answer_choice": "A"}."""
    from api_stub import StubServer, completion

    from polyculture.backends.generation import Sampling
    from polyculture.backends.generation.openai import OpenAIGenerator
    from polyculture.evals.tables import generate_responses

    items = SPEC.implementation().items(SPEC.settings).head(12)
    settings = {
        "base_url": "",
        "api_key_env": "STUB_API_KEY",
        "cache_dir": str(tmp_path / "cache"),
        "usage_path": str(tmp_path / "usage.json"),
    }
    with StubServer(lambda body, count: (200, {}, completion('{"answer_choice": "A"}'))) as stub:
        gen = OpenAIGenerator(
            "openai:stub", {**settings, "base_url": stub.base_url}, environ={"STUB_API_KEY": "k"}
        )
        responses, drops = generate_responses(
            gen, items, Sampling(temperature=0.0, max_new_tokens=32, seed=1),
            prompt_format="chat", stage="benchmark_generate", group="blend-mcq/api",
        )  # fmt: skip
        sent = [r["body"]["messages"] for r in stub.requests]
    assert drops.dropped == 0 and responses["item_id"].to_list() == items["item_id"].to_list()
    assert sorted(m[-1]["content"] for m in sent) == sorted(items["prompt"].to_list())
    scores, score_drops = score_benchmark(SPEC, items, responses, "api")
    assert score_drops.dropped == 0
    assert scores["accuracy"].to_list() == [float(a == "A") for a in items["answer_idx"]]
