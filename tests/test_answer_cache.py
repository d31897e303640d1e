"""One engine per base model (issue 26): the answer cache (a killed job resumes with only the
calls it had not finished; a new country or adapter generates only what is new; same answers as
an uninterrupted run) and multi-adapter switching on the hf backend, with the real tiny model
and a real LoRA adapter."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from polyculture.backends.answer_cache import (
    AnswerCache,
    CacheStats,
    cached_call,
    dir_fingerprint,
    item_keys,
    model_identity,
)
from polyculture.backends.engine import engine_groups
from polyculture.backends.generation import Sampling, load_generator
from polyculture.backends.generation.base import adapter_brings, check_shared_tokenizer
from polyculture.backends.open import engine_plans
from polyculture.blend import country_prompts, run_languages
from polyculture.blend.engine import EngineMember, engine_answers, member_answers
from polyculture.errors import InputError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "resources" / "demo" / "blend"
GREEDY = Sampling(temperature=0, max_new_tokens=6)
SAMPLED = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=6, seed=7)


def make_adapter(model_dir: Path, dest: Path, seed: int) -> Path:
    """A real LoRA adapter of the tiny model with random (non-zero) weights, saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(lm, cfg).save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def tiny(builtin_models: dict[str, Path]) -> Path:
    return builtin_models["tiny-chat"]


@pytest.fixture(scope="module")
def adapters(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: str(make_adapter(tiny, root / name, seed)) for seed, name in enumerate("ab")}


class Counted:
    """A real generator that counts its generate calls and prompts, and stops the job (as a
    kill would) when a call would exceed `fail_after`."""

    def __init__(self, generator: Any, fail_after: int | None = None) -> None:
        self.generator, self.fail_after = generator, fail_after
        self.calls = self.prompts = 0
        self.adapters = generator.adapters

    def use_adapter(self, name: str | None) -> None:
        self.generator.use_adapter(name)

    def generate(self, convs: Any, n: int, sampling: Sampling) -> list[list[str]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("job killed")
        self.calls += 1
        self.prompts += len(convs)
        return self.generator.generate(convs, n, sampling)


def members(tiny: Path, adapters: dict[str, str], names: list[str]) -> list[EngineMember]:
    settings = {"backend": "hf", "batch_size": 4}
    return [
        EngineMember(
            n,
            n in adapters,
            model_identity("builtin:tiny-chat", str(tiny), adapters.get(n), settings),
        )
        for n in names
    ]


def prompts_of(countries: list[str]) -> dict[str, pl.DataFrame]:
    runs = {c: [[lang, "inst-4"] for lang in run_languages(c)] for c in countries}
    return {c: country_prompts(DATA, c, runs[c], max_questions=2) for c in countries}


def test_killed_job_resumes_with_only_missing_calls_and_same_answers(
    tiny: Path, adapters: dict[str, str], tmp_path: Path
) -> None:
    engine = load_generator(str(tiny), backend="hf", batch_size=4, adapters=adapters)
    everyone = members(tiny, adapters, ["base", "a", "b"])
    prompts = prompts_of(["US", "Greece"])
    per_call = {c: t.height for c, t in prompts.items()}

    clean, _ = engine_answers(lambda: engine, everyone, prompts, SAMPLED, "chat", None)

    killed = Counted(engine, fail_after=4)  # 6 calls: (base, a, b) x (US, Greece)
    with pytest.raises(KeyboardInterrupt):
        engine_answers(
            lambda: killed, everyone, prompts, SAMPLED, "chat", AnswerCache(tmp_path, "e")
        )
    assert killed.calls == 4

    rerun = Counted(engine)
    table, stats = engine_answers(
        lambda: rerun, everyone, prompts, SAMPLED, "chat", AnswerCache(tmp_path, "e")
    )
    assert (rerun.calls, rerun.prompts) == (2, per_call["US"] + per_call["Greece"])
    assert (stats.calls_cached, stats.calls_run) == (4, 2)
    assert table.equals(clean)

    again = Counted(engine)
    engine_answers(lambda: again, everyone, prompts, SAMPLED, "chat", AnswerCache(tmp_path, "e"))
    assert again.calls == 0  # all cached: a job would not even load the engine


def test_new_country_or_adapter_generates_only_what_is_new(
    tiny: Path, adapters: dict[str, str], tmp_path: Path
) -> None:
    engine = load_generator(str(tiny), backend="hf", batch_size=4, adapters=adapters)
    first = Counted(engine)
    engine_answers(
        lambda: first,
        members(tiny, adapters, ["base", "a"]),
        prompts_of(["US"]),
        GREEDY,
        "chat",
        AnswerCache(tmp_path, "e"),
    )
    assert first.calls == 2
    more = Counted(engine)
    prompts = prompts_of(["US", "Greece"])
    table, _ = engine_answers(
        lambda: more,
        members(tiny, adapters, ["base", "a", "b"]),
        prompts,
        GREEDY,
        "chat",
        AnswerCache(tmp_path, "e"),
    )
    # new: Greece for base and a; both countries for b
    assert more.calls == 4
    assert (
        more.prompts
        == 2 * prompts["Greece"].height + prompts["US"].height + prompts["Greece"].height
    )
    rows, drops = member_answers(table, "b", "Greece")
    assert rows.height == prompts["Greece"].height == drops.total
    with pytest.raises(InputError, match="no answers"):
        member_answers(table, "c", "US")


def test_hf_adapter_switching_matches_separate_loads(tiny: Path, adapters: dict[str, str]) -> None:
    convs = [[{"role": "user", "content": t}] for t in prompts_of(["US"])["US"]["prompt"]]
    plain = load_generator(str(tiny), backend="hf", batch_size=4)
    base = plain.generate(convs, 2, SAMPLED)
    plain.close()
    multi = load_generator(str(tiny), backend="hf", batch_size=4, adapters=adapters)
    assert multi.generate(convs, 2, SAMPLED) == base  # no adapter chosen: the base model
    for name, path in adapters.items():
        single = load_generator(str(tiny), backend="hf", batch_size=4, adapter=path)
        expected = single.generate(convs, 2, SAMPLED)
        single.close()
        multi.use_adapter(name)
        assert multi.generate(convs, 2, SAMPLED) == expected != base
    multi.use_adapter(None)
    assert multi.generate(convs, 2, SAMPLED) == base
    with pytest.raises(InputError, match="not served"):
        multi.use_adapter("c")


def test_keys_follow_adapter_files_sampling_and_seed(
    tiny: Path, adapters: dict[str, str], tmp_path: Path
) -> None:
    ident = {n: model_identity("builtin:tiny-chat", str(tiny), p, {}) for n, p in adapters.items()}
    assert ident["a"]["adapter"] == dir_fingerprint(adapters["a"]) != ident["b"]["adapter"]
    keys = item_keys(ident["a"], ["p", "q"], 1, SAMPLED, "chat")
    assert keys == item_keys(ident["a"], ["p", "q"], 1, SAMPLED, "chat")
    assert keys != item_keys(ident["b"], ["p", "q"], 1, SAMPLED, "chat")
    other_seed = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=6, seed=8)
    assert keys != item_keys(ident["a"], ["p", "q"], 1, other_seed, "chat")
    # greedy answers do not depend on the seed, random ones on the prompt's position
    assert item_keys(ident["a"], ["p"], 1, GREEDY, "chat") == item_keys(
        ident["a"], ["p"], 1, Sampling(temperature=0, max_new_tokens=6, seed=9), "chat"
    )
    assert keys[1] != item_keys(ident["a"], ["q"], 1, SAMPLED, "chat")[0]
    # a call with any key missing runs whole; a damaged segment is skipped
    cache, stats = AnswerCache(tmp_path, "m"), CacheStats()
    assert cached_call(cache, keys, lambda: ["x", "y"], stats) == ["x", "y"]
    assert cached_call(cache, [keys[0], "new"], lambda: ["x2", "z"], stats) == ["x2", "z"]
    assert (stats.calls_run, stats.items_generated) == (2, 4)
    next(cache.dir.glob("*/*.json")).write_text("{", encoding="utf-8")
    assert len(AnswerCache(tmp_path, "m")) == 2


def test_engine_groups_one_per_base_model_and_backend() -> None:
    models = [
        {"name": "base", "model": "m"},
        {"name": "a", "model": "m", "adapter": "full"},
        {"name": "merged", "model": "m", "adapter": "full", "merge_adapter": True},
        {"name": "tp", "model": "m", "adapter": "x", "backend": {"vllm": {"enforce_eager": True}}},
        {"name": "other", "model": "n", "adapter": "full"},
        {"name": "b", "model": "m", "adapter": "y"},
    ]
    assert engine_groups(models) == {
        "base": ["base", "a", "b"],
        "merged": ["merged"],
        "tp": ["tp"],
        "other": ["other"],
    }


def test_adapter_with_its_own_tokenizer_gets_an_engine_of_its_own(
    adapters: dict[str, str], tmp_path: Path
) -> None:
    own = tmp_path / "own"
    shutil.copytree(adapters["a"], own)
    (own / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    assert adapter_brings(str(own)) == ["tokenizer"] and adapter_brings(adapters["a"]) == []
    members = [
        {"name": "base", "adapter": None, "merge_adapter": False},
        {"name": "a", "adapter": adapters["a"], "merge_adapter": False},
        {"name": "own", "adapter": str(own), "merge_adapter": False},
        {"name": "b", "adapter": adapters["b"], "merge_adapter": False},
    ]
    plans = engine_plans("m", members, {"generation": "hf", "batch_size": 4})
    assert [(p.members, p.switches) for p in plans] == [
        (["base", "a", "b"], True),
        (["own"], False),
    ]
    assert plans[0].kwargs["adapters"] == {"a": adapters["a"], "b": adapters["b"]}
    assert plans[1].kwargs["adapter"] == str(own) and "adapters" not in plans[1].kwargs
    with pytest.raises(InputError, match="brings its own tokenizer"):
        check_shared_tokenizer({"own": str(own)})


def test_benchmark_engine_rerun_generates_only_missing_items(
    tiny: Path,
    adapters: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A folder benchmark's engine job (benchmark_generate: one call per eval model, all groups)
    over a cache that holds the base model's answers generates only the adapter's items (as a
    rerun after a kill, or with an adapter added), gives the answers of an uncached run, and
    splits into per-model responses with their drops (benchmark_responses)."""
    from polyculture.backends.engine_job import EngineJob
    from polyculture.evals import load_benchmark
    from polyculture.evals.tables import engine_responses, generate_responses, model_responses

    groups = {"values": ["US", "Greece"]}
    spec = load_benchmark("blend-mcq", {"data": {"path": str(DATA)}, "groups": groups})
    items = spec.implementation().items(spec.settings).head(6)
    backend = {"generation": "hf", "batch_size": 4}
    everyone = [
        {"name": "base", "adapter": None, "merge_adapter": False},
        {"name": "a", "adapter": adapters["a"], "merge_adapter": False},
    ]

    def run(members: list[dict[str, Any]], cache: AnswerCache | None) -> pl.DataFrame:
        caplog.clear()
        job = EngineJob("builtin:tiny-chat", str(tiny), members, backend)
        with caplog.at_level("INFO", logger="polyculture.backends.answer_cache"):
            return engine_responses(job, items, GREEDY, "chat", cache)

    clean = run(everyone, None)
    assert clean["model"].to_list() == ["base"] * 6 + ["a"] * 6
    run(everyone[:1], AnswerCache(tmp_path, "e"))  # the base model's call, then the job ends
    assert "0 calls cached (0 items), 1 calls run (6 items)" in caplog.text
    table = run(everyone, AnswerCache(tmp_path, "e"))
    assert "1 calls cached (6 items), 1 calls run (6 items)" in caplog.text
    assert table.equals(clean)
    assert run(everyone, AnswerCache(tmp_path, "e")).equals(clean)
    assert "2 calls cached (12 items), 0 calls run (0 items)" in caplog.text

    path = tmp_path / "engine.parquet"
    table.write_parquet(path)
    single = load_generator(str(tiny), backend="hf", batch_size=4, adapter=adapters["a"])
    alone, alone_drops = generate_responses(
        single, items, GREEDY, prompt_format="chat", stage="benchmark_generate", group="mcq/a"
    )
    single.close()
    responses, drops = model_responses(path, "mcq", "a")
    assert responses.equals(alone)  # the adapter's own job would have answered the same
    assert drops.to_frame().equals(alone_drops.to_frame())
    with pytest.raises(InputError, match="no answers"):
        model_responses(path, "mcq", "b")
