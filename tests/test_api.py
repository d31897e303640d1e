"""The openai backend (polyculture.backends.generation.openai) without a real server: model specs, the config checks,
Retry-After and backoff, the usage summary, and the fault shapes that a real vLLM server cannot be
made to produce on demand (429, 5xx, a 400 about response_format, malformed JSON content), on a
loopback stub (tests/api_stub.py). Everything else runs against vLLM's own server in
tests/test_api_vllm.py."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from api_stub import StubServer, completion, error  # noqa: E402

from polyculture.backends.generation import Sampling, load_generator  # noqa: E402
from polyculture.backends.generation.openai import (  # noqa: E402
    ApiError,
    ApiSettings,
    OpenAIGenerator,
    backoff_delay,
    retry_after_s,
    summarize_usage,
    usage_path_for,
)
from polyculture.backends.spec import (  # noqa: E402
    classify_model_spec,
    is_api_spec,
    parse_api_spec,
    parse_model_spec,
    resolve_model_spec,
)
from polyculture.config_check import api_models_used, check_api_models  # noqa: E402
from polyculture.errors import ConfigError, ModelSpecError  # noqa: E402

SECRET = "sk-polycultureStubSecret-9fQ2xLm7"
SCHEMA = {
    "type": "object",
    "properties": {"stance": {"enum": ["pro", "con", "null"]}},
    "required": ["stance"],
    "additionalProperties": False,
}
CONVS = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]


def settings(base_url: str, tmp_path: Path, **kw) -> dict:
    return {
        "base_url": base_url,
        "api_key_env": "STUB_API_KEY",
        "cache_dir": str(tmp_path / "cache"),
        "usage_path": str(tmp_path / "out.parquet.api-usage.json"),
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        **kw,
    }


def generator(base_url: str, tmp_path: Path, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(
        "openai:stub-model", settings(base_url, tmp_path, **kw), environ={"STUB_API_KEY": SECRET}
    )


def echo(body: dict, count: int):
    """200 with a reply that names the question, the seed and the temperature it was asked with."""
    content = f"{body['messages'][-1]['content']} seed={body.get('seed')} t={body['temperature']}"
    return 200, {}, completion(content)


SAMPLED = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16, seed=3)


def test_specs_and_their_classification() -> None:
    assert parse_api_spec("openai:gpt-4o") == (None, "gpt-4o")
    assert parse_api_spec("openai@local:Qwen/Qwen2.5-0.5B") == ("local", "Qwen/Qwen2.5-0.5B")
    assert is_api_spec("openai:gpt-4o") and not is_api_spec("google/gemma-2-2b-it")
    assert classify_model_spec("openai:gpt-4.1") == "api"
    assert resolve_model_spec("openai:gpt-4.1", "results/models") == "openai:gpt-4.1"
    for bad in ("openai:", "openai@:gpt-4o", "openai@a b:gpt"):
        with pytest.raises(ModelSpecError, match="openai:<model>"):
            classify_model_spec(bad)


def test_endpoints_written_as_urls() -> None:
    """openai@<url>:<model>: the URL runs to the first ':' after the first '/' of its path, so
    model names keep their colons; a URL without a path is refused with the rule spelled out."""
    assert parse_api_spec("openai@http://localhost:8000/v1:llama3:8b") == (
        "http://localhost:8000/v1",
        "llama3:8b",
    )
    assert parse_api_spec("openai@https://api.example.org/v1:ft:gpt-4o-mini:org::id") == (
        "https://api.example.org/v1",
        "ft:gpt-4o-mini:org::id",
    )
    assert parse_api_spec("openai@http://10.0.0.5:8000/openai/v1:Qwen/Qwen2.5-0.5B") == (
        "http://10.0.0.5:8000/openai/v1",
        "Qwen/Qwen2.5-0.5B",
    )
    assert parse_api_spec("openai:ft:gpt-4o-mini:org::id") == (None, "ft:gpt-4o-mini:org::id")
    assert parse_api_spec("openai@local:llama3:8b") == ("local", "llama3:8b")
    spec = parse_model_spec("openai@http://localhost:8000/v1:llama3:8b")
    assert (spec.kind, spec.provider, spec.endpoint, spec.api_model) == (
        "api",
        "openai",
        "http://localhost:8000/v1",
        "llama3:8b",
    )
    assert spec.endpoint_is_url and spec.gpus == 0 and spec.needs_network
    for no_path in ("openai@http://localhost:8000:llama3", "openai@https://api.openai.com:gpt-4o"):
        with pytest.raises(ModelSpecError, match="first ':' after the first '/' of its path"):
            parse_api_spec(no_path)
    with pytest.raises(ModelSpecError, match="is not a URL"):  # the port is not a number
        parse_api_spec("openai@http://localhost:8000:org/model:tag")
    with pytest.raises(ModelSpecError, match="no model name"):
        parse_api_spec("openai@http://localhost:8000/v1:")
    settings = ApiSettings(api_key_env="MY_KEY")
    endpoint = settings.endpoint("http://localhost:8000/v1")
    assert endpoint.base_url == "http://localhost:8000/v1"
    # the default endpoint's key variable, sent where it is set, a placeholder where not
    assert endpoint.api_key({"MY_KEY": "k"}) == "k" and endpoint.api_key({}) == "EMPTY"
    with pytest.raises(ConfigError, match="MY_KEY, which is not set"):
        settings.endpoint(None).api_key({})


def test_an_unknown_endpoint_name_shows_both_forms() -> None:
    with pytest.raises(ConfigError) as info:
        ApiSettings(endpoints={"local": {"base_url": "http://h:1/v1"}}).endpoint("http")
    msg = str(info.value)
    assert "no endpoint named 'http'; configured: local" in msg
    assert "openai@<name>:<model>" in msg and "openai@http://host:port/v1:<model>" in msg


def test_the_cache_key_holds_the_endpoint_url(tmp_path: Path) -> None:
    """Two endpoints serving the same model name get their own replies (not shared through the
    cache); the same endpoint asked again answers from the cache."""
    greedy = Sampling(temperature=0, max_new_tokens=16)
    with StubServer(echo) as one, StubServer(echo) as two:
        first = generator(one.base_url, tmp_path).generate(CONVS[:2], n=1, sampling=greedy)
        second = generator(two.base_url, tmp_path).generate(CONVS[:2], n=1, sampling=greedy)
        again = generator(one.base_url, tmp_path).generate(CONVS[:2], n=1, sampling=greedy)
    assert first == second == again
    assert len(one.requests) == 2 and len(two.requests) == 2  # two: not from one's replies
    url = "http://localhost:8000/v1"
    via_url = OpenAIGenerator(f"openai@{url}:stub-model", settings(url, tmp_path), environ={})
    assert via_url.endpoint.base_url == url and via_url.model_name == "stub-model"


def _config(**over) -> dict:
    config = {
        "pipelines": {"consensus": False, "train": False, "evaluate": False, "wvs": True},
        "backend": {"openai": {}},
        "translator": {"kind": "llm", "model": "openai:gpt-4.1"},
        "eval_models": [{"name": "gpt-4o", "model": "openai:gpt-4o"}],
        "wvs": {"judge": "openai@local:judge"},
    }
    config.update(over)
    return config


def test_config_check_refuses_api_models_where_weights_are_needed() -> None:
    env = {"OPENAI_API_KEY": "x", "LOCAL_KEY": "y"}
    local = {
        "openai": {
            "endpoints": {"local": {"base_url": "http://h:1/v1", "api_key_env": "LOCAL_KEY"}}
        }
    }
    check_api_models(_config(backend=local), env)
    assert api_models_used(_config()) == ["openai:gpt-4.1", "openai:gpt-4o", "openai@local:judge"]
    with pytest.raises(ConfigError, match=r"'wvs.judge'.*no endpoint named 'local'"):
        check_api_models(_config(), env)
    with pytest.raises(ConfigError, match=r"'translator.model'.*OPENAI_API_KEY, which is not set"):
        check_api_models(_config(backend=local), {"LOCAL_KEY": "y"})
    refusals = {
        "train.base_model": {
            "pipelines": {"train": True, "consensus": False, "evaluate": False},
            "train": {"base_model": "openai:gpt-4o"},
        },
        "consensus.embedder": {
            "pipelines": {"consensus": True, "train": False, "evaluate": False},
            "consensus": {"embedder": "openai:text-embedding-3-small"},
        },
        "translator.model": {"translator": {"kind": "nllb", "model": "openai:gpt-4o"}},
    }
    for key, over in refusals.items():
        with pytest.raises(ConfigError, match=rf"'{key}'.*API model.*needs model weights"):
            check_api_models(_config(backend=local, **over), env)
    # the evaluate pipeline runs BLEnD on an API eval model; only its lm-eval tasks are skipped
    evaluating = {"pipelines": {"consensus": False, "train": False, "evaluate": True}}
    check_api_models(_config(backend=local, **evaluating), env)
    adapter = [{"name": "m", "model": "openai:gpt-4o", "adapter": "full"}]
    with pytest.raises(ConfigError, match="LoRA adapter"):
        check_api_models(_config(backend=local, eval_models=adapter), env)


def test_retry_after_and_backoff() -> None:
    import random

    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 0 <= retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_s({}) is None and retry_after_s({"retry-after": "soon"}) is None
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 60.0, rng) for a in range(8)]
    for a, d in enumerate(delays):
        cap = min(60.0, 2.0**a)
        assert cap / 2 <= d < cap
    with pytest.raises(ConfigError, match="backend.openai.max_concurrency"):
        ApiSettings(max_concurrency=0)
    with pytest.raises(ConfigError, match="backend.openai.nope"):
        ApiSettings.from_config({"nope": 1})


def test_429_then_200_is_retried_after_retry_after(tmp_path: Path) -> None:
    def scenario(body, count):
        if count == 0:
            return 429, {"retry-after": "0.3"}, error(429, "Rate limit reached")
        return echo(body, count)

    with StubServer(scenario) as stub:
        gen = generator(stub.base_url, tmp_path)
        out = gen.generate(CONVS[:1], n=1, sampling=SAMPLED)
        t = [r["t"] for r in stub.requests]
    assert out == [[f"question 0 seed={stub.requests[1]['body']['seed']} t=0.7"]]
    assert len(t) == 2 and t[1] - t[0] >= 0.3  # waited what Retry-After asked
    assert gen.usage.retries == 1 and gen.usage.sent == 1
    assert stub.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"


def test_sampling_stop_is_sent_except_with_a_schema(tmp_path: Path) -> None:
    stopped = Sampling(temperature=0, max_new_tokens=16, stop=("11.", "\n\n"))
    with StubServer(lambda b, c: (200, {}, completion('{"stance": "pro"}'))) as stub:
        gen = generator(stub.base_url, tmp_path)
        gen.generate(CONVS[:1], n=1, sampling=stopped)
        gen.generate_json(CONVS[1:2], SCHEMA, n=1, sampling=stopped)
        gen.generate(CONVS[2:3], n=1, sampling=Sampling(temperature=0, max_new_tokens=16))
        bodies = [r["body"] for r in stub.requests]
    assert bodies[0]["stop"] == ["11.", "\n\n"]
    assert "stop" not in bodies[1] and "stop" not in bodies[2]


def test_500s_past_the_budget_fail_naming_endpoint_and_status_and_keep_the_rest(
    tmp_path: Path,
) -> None:
    broken = {"question 2"}

    def scenario(body, count):
        if body["messages"][-1]["content"] in broken:
            return 500, {}, error(500, "upstream exploded")
        return echo(body, count)

    with StubServer(scenario) as stub:
        gen = generator(stub.base_url, tmp_path, max_retries=2, max_concurrency=1)
        with pytest.raises(ApiError) as info:
            gen.generate(CONVS, n=2, sampling=SAMPLED)
        msg = str(info.value)
        assert stub.base_url in msg and "status 500" in msg and "after 3 attempts" in msg
        assert "upstream exploded" in msg and "stub-model" in msg
        sent_first = len(stub.requests)
        # the server recovers: the rerun sends only what is missing
        broken.clear()
        gen2 = generator(stub.base_url, tmp_path)
        out = gen2.generate(CONVS, n=2, sampling=SAMPLED)
        resent = [r["body"]["messages"][-1]["content"] for r in stub.requests[sent_first:]]
    ok_before = [
        r
        for r in stub.requests[:sent_first]
        if r["body"]["messages"][-1]["content"] != "question 2"
    ]
    assert len(ok_before) == gen.usage.sent  # what succeeded before the failure was cached
    assert gen2.usage.cache_hits == gen.usage.sent
    assert gen2.usage.sent == 8 - gen.usage.sent and "question 2" in resent
    assert [len(row) for row in out] == [2, 2, 2, 2]
    assert len({s for row in out for s in row}) == 8  # every sample has its own seed
    usage = json.loads((tmp_path / "out.parquet.api-usage.json").read_text())
    assert usage["cache_hits"] == gen2.usage.cache_hits and usage["replies"] == 8


def test_a_garbled_200_is_retried(tmp_path: Path) -> None:
    """A 200 whose body is not a chat completion (cut-off JSON, no choices) is a transient
    fault: asked again, and the good reply is what gets cached."""

    def scenario(body, count):
        if count == 0:
            return 200, {}, b'{"id": "chatcmpl-x", "choices": [{"mess'
        if count == 1:
            return 200, {}, {"id": "chatcmpl-x", "object": "chat.completion", "choices": []}
        return echo(body, count)

    with StubServer(scenario) as stub:
        gen = generator(stub.base_url, tmp_path)
        out = gen.generate(CONVS[:1], n=1, sampling=Sampling(temperature=0, max_new_tokens=4))
        assert len(stub.requests) == 3
    assert out == [["question 0 seed=None t=0.0"]] and gen.usage.retries == 2


def test_client_errors_fail_at_once(tmp_path: Path) -> None:
    with StubServer(lambda b, c: (401, {}, error(401, "Incorrect API key provided"))) as stub:
        gen = generator(stub.base_url, tmp_path)
        with pytest.raises(ApiError, match="refused with status 401: .*Incorrect API key"):
            gen.generate(CONVS[:1], n=1, sampling=SAMPLED)
        assert len(stub.requests) == 1


def test_malformed_json_replies_are_drops_and_response_format_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def scenario(body, count):
        if "response_format" in body:
            return 400, {}, error(400, "response_format json_schema is not supported")
        q = body["messages"][-1]["content"]
        replies = {
            "question 0": '{"stance": "pro"}',
            "question 1": '{"stance": "pro"',  # cut off
            "question 2": '{"stance": "maybe"}',  # parses, fails the schema
            "question 3": "I think pro.",
        }
        return 200, {}, completion(replies[q])

    greedy = Sampling(temperature=0, max_new_tokens=16)
    with (
        StubServer(scenario) as stub,
        caplog.at_level(logging.WARNING, "polyculture.backends.generation.openai"),
    ):
        gen = generator(stub.base_url, tmp_path)
        out = gen.generate_json(CONVS, SCHEMA, n=2, sampling=greedy)
        sent = list(stub.requests)
        stub.requests.clear()
        again = generator(stub.base_url, tmp_path, structured_output="none")
        assert again.generate_json(CONVS, SCHEMA, n=2, sampling=greedy) == out
        assert stub.requests == []  # all from the cache
    assert out == [[{"stance": "pro"}] * 2, [None, None], [None, None], [None, None]]
    assert "does not take response_format" in caplog.text
    # refused requests (those in flight when the first 400 came back), then one per
    # conversation without response_format (greedy: n copies of one reply, no seed)
    refused = [r for r in sent if "response_format" in r["body"]]
    plain = [r["body"] for r in sent if "response_format" not in r["body"]]
    assert 1 <= len(refused) <= 4 and len(plain) == 4
    assert sent[-1] is not refused[-1] and all("seed" not in b for b in plain)


def test_the_key_stays_out_of_cache_usage_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with StubServer(echo) as stub, caplog.at_level(logging.DEBUG):
        gen = generator(stub.base_url, tmp_path)
        gen.generate(CONVS, n=1, sampling=SAMPLED)
        gen.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 5
    for p in files:
        assert SECRET not in p.read_text()
    assert SECRET not in caplog.text and "STUB_API_KEY" in caplog.text


def test_load_generator_dispatches_api_specs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STUB_API_KEY", SECRET)
    with StubServer(echo) as stub:
        gen = load_generator(
            "openai:stub-model", backend="hf", openai=settings(stub.base_url, tmp_path)
        )
        assert isinstance(gen, OpenAIGenerator)
        assert gen.generate(CONVS[:1], n=1, sampling=Sampling(temperature=0, max_new_tokens=4)) == [
            ["question 0 seed=None t=0.0"]
        ]
    with pytest.raises(ConfigError, match="cannot load a LoRA adapter"):
        load_generator("openai:x", adapter="a", openai=settings(stub.base_url, tmp_path))
    monkeypatch.delenv("STUB_API_KEY")
    with pytest.raises(ConfigError, match="STUB_API_KEY, which is not set"):
        load_generator("openai:x", openai=settings(stub.base_url, tmp_path))


def test_usage_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recs = {
        "results/wvs/responses/m/da/shard0.parquet": ("gpt-4o", 10, 4, 100, 50, 60, 30),
        "results/wvs/responses/m/en/shard0.parquet": ("gpt-4o", 10, 10, 100, 50, 0, 0),
        "results/wvs/judged/m/shard0.parquet": ("gpt-4.1", 5, 0, 20, 5, 20, 5),
        "results/other/x/y.parquet": ("gpt-4.1", 1, 0, 1, 1, 1, 1),
    }
    for out, (model, replies, hits, p, c, sp, sc) in recs.items():
        path = Path(usage_path_for(out))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "model": model,
                    "base_url": "https://api.openai.com/v1",
                    "replies": replies,
                    "cache_hits": hits,
                    "sent": replies - hits,
                    "retries": 0,
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "sent_prompt_tokens": sp,
                    "sent_completion_tokens": sc,
                }
            )
        )
    rules = {
        "wvs_survey": r"results/wvs/responses/(?P<model>.+)/(?P<language>.+)/shard(?P<shard>.+)\.parquet$",
        "wvs_judge": r"results/wvs/judged/(?P<model>.+)/shard(?P<shard>.+)\.parquet$",
        "wvs_parse": r"results/wvs/parsed/(?P<model>.+)\.parquet$",
    }
    paths = sorted(Path("results").rglob("*.api-usage.json"))
    table = summarize_usage(paths, "results", rules)
    rows = {r["rule"]: r for r in table.to_dicts()}
    assert set(rows) == {"wvs_survey", "wvs_judge", "other/x", "TOTAL"}
    assert rows["wvs_survey"]["prompt_tokens"] == 200 and rows["wvs_survey"]["sent"] == 6
    assert rows["TOTAL"]["prompt_tokens"] == 221 and rows["TOTAL"]["sent_completion_tokens"] == 36
    assert summarize_usage([], "results").height == 0


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    active, peak = [0], [0]
    import threading

    lock = threading.Lock()

    def scenario(body, count):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return echo(body, count)

    with StubServer(scenario) as stub:
        gen = generator(stub.base_url, tmp_path, max_concurrency=3)
        gen.generate(CONVS, n=4, sampling=SAMPLED)
        assert len(stub.requests) == 16
    assert peak[0] == 3


@pytest.mark.workflow
def test_survey_rule_fails_naming_endpoint_and_last_status(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server that answers 500 past the retry budget fails the wvs_survey job; its log names
    the endpoint, the model and the last status, and nothing else of the run is lost."""
    import yaml
    from conftest import copy_workflow, run_snakemake

    work = copy_workflow(tmp_path_factory.mktemp("api-500"))
    config = yaml.safe_load((work / "config.yaml").read_text())
    for section in ("consensus", "train", "evaluate", "alignment"):
        config.pop(section)
    config["pipelines"] = {
        "consensus": False,
        "train": False,
        "evaluate": False,
        "wvs": True,
        "alignment": False,
    }
    config["eval_models"] = [{"name": "api-chat", "model": "openai:stub-model"}]
    config["translator"] = {"kind": "llm", "model": "openai:stub-model"}
    config["wvs"]["judge"] = "openai:stub-model"
    # English alone: the survey job of a model answers every language, and English needs no
    # translation (which would meet the failing stub first)
    config["wvs"]["languages"] = ["en"]
    with StubServer(lambda b, c: (500, {}, error(500, "the stub is down"))) as stub:
        config["backend"] = {
            "openai": {
                "base_url": stub.base_url,
                "api_key_env": "STUB_API_KEY",
                "max_retries": 1,
                "backoff_s": 0.05,
                "backoff_max_s": 0.1,
            }
        }
        (work / "api.yaml").write_text(yaml.safe_dump(config))
        target = "results/wvs/responses/api-chat/en/shard0.parquet"
        proc = run_snakemake(
            work,
            target,
            "--configfile",
            "api.yaml",
            check=False,
            env={"STUB_API_KEY": SECRET},
        )
    assert proc.returncode != 0, proc.stdout[-2000:]
    logs = list((work / "results" / "logs" / "wvs_survey" / "api-chat").glob("*.log"))
    assert len(logs) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = logs[0].read_text()
    assert f"{stub.base_url}: model 'stub-model': request failed after 2 attempts" in text
    assert "last status 500: the stub is down" in text
    assert SECRET not in text and SECRET not in proc.stdout + proc.stderr
    assert not (work / target).exists()
    assert (work / "results" / "wvs" / "prompts" / "en.parquet").is_file()  # kept
