# Settings and helpers of the benchmark rules (rules/benchmarks.smk), and benchmarks_targets().
# A benchmark is one folder under src/polyculture/evals/ (polyculture.evals.base); the config's
# evaluate.benchmarks lists those to run, each a name or {name, ...overrides}.
import re
from pathlib import Path

from polyculture.workflow import (
    benchmark_entries,
    benchmark_inputs,
    check_benchmark,
    engine_groups,
    fetches_data,
    with_fetched_data,
)

BENCHMARKS = {
    b.name: b for b in benchmark_entries(config["evaluate"].get("benchmarks", []))
}
#: Benchmarks whose data rule benchmark_fetch downloads (data.hub_dataset, no local data); they
#: read it from results/evaluate/<benchmark>/data, checked once it is there.
FETCHED_BENCHMARKS = {name for name, spec in BENCHMARKS.items() if fetches_data(spec)}
for _name in FETCHED_BENCHMARKS:
    BENCHMARKS[_name] = with_fetched_data(BENCHMARKS[_name], f"{EVAL_DIR}/{_name}/data")
if config["pipelines"]["evaluate"]:
    for _name, _spec in BENCHMARKS.items():
        if (
            _name not in FETCHED_BENCHMARKS
            or Path(_spec.settings["data"]["path"]).is_dir()
        ):
            check_benchmark(_spec)
BENCHMARK_RE = "|".join(re.escape(b) for b in BENCHMARKS) or "(?!)"
FETCHED_BENCHMARK_RE = (
    "|".join(re.escape(b) for b in sorted(FETCHED_BENCHMARKS)) or "(?!)"
)


def benchmark_models(name):
    """Eval models a benchmark runs: all, less the API models where it needs weights
    (log-likelihoods)."""
    needs_weights = BENCHMARKS[name].settings.get("needs_weights", False)
    return [m for m in EVAL_MODELS if not (needs_weights and m in LM_EVAL_SKIPPED)]


#: One generation job (one engine) per benchmark and group of its eval models sharing a base model
#: and its backend settings: the base model and its unmerged adapters
#: (polyculture.backends.engine.engine_groups), named by the group's first eval model.
BENCHMARK_ENGINES = {
    name: engine_groups(
        [m for m in config["eval_models"] if m["name"] in benchmark_models(name)]
    )
    for name in BENCHMARKS
}
BENCHMARK_ENGINE_RE = (
    "|".join(
        re.escape(g)
        for g in dict.fromkeys(g for e in BENCHMARK_ENGINES.values() for g in e)
    )
    or "(?!)"
)


def benchmark_engine_input(wildcards):
    """Base model (built-in) and adapters of every eval model one benchmark engine serves."""
    files = []
    for name in BENCHMARK_ENGINES[wildcards.benchmark][wildcards.bench_engine]:
        files += [f for f in eval_model_input(name) if f not in files]
    return files


def benchmark_engine_members(wildcards):
    """Name and load settings of every eval model one benchmark engine serves, in config order."""
    return [
        {"name": name, **eval_model_params(name)}
        for name in BENCHMARK_ENGINES[wildcards.benchmark][wildcards.bench_engine]
    ]


def benchmark_engine_responses(wildcards):
    """The responses table of the engine that serves the eval model of a per-model rule."""
    engines = BENCHMARK_ENGINES[wildcards.benchmark]
    engine = next(
        g for g, members in engines.items() if wildcards.bench_model in members
    )
    return f"{benchmark_dir(wildcards.benchmark)}/engines/{engine}.parquet"


def benchmark_dir(name):
    return f"{EVAL_DIR}/{name}"


def benchmark_data_input(wildcards):
    """The local files a benchmark's items are built from (the downloaded folder where
    benchmark_fetch makes it)."""
    name = wildcards.benchmark
    if name in FETCHED_BENCHMARKS:
        return [BENCHMARKS[name].settings["data"]["path"]]
    return benchmark_inputs(BENCHMARKS[name])


def benchmark_settings(wildcards):
    return BENCHMARKS[wildcards.benchmark].settings


def benchmark_generation(wildcards):
    return BENCHMARKS[wildcards.benchmark].settings["generation"]


def benchmark_seed(wildcards):
    """The config's seed plus the benchmark's generation.seed_offset."""
    return SEED + BENCHMARKS[wildcards.benchmark].settings["generation"]["seed_offset"]


def benchmark_scores(wildcards):
    """Per-item score tables of every model the benchmark runs."""
    name = wildcards.benchmark
    return [f"{benchmark_dir(name)}/{m}/scores.parquet" for m in benchmark_models(name)]


def benchmarks_targets():
    """Final outputs of the benchmark rules that rule all requests."""
    if not EVAL_MODELS:
        return []
    return [
        f"{benchmark_dir(b)}/{f}"
        for b in BENCHMARKS
        for f in ("summary.md", "summary.json", "comparison.parquet")
    ]


def benchmark_drop_tables():
    """Drop tables of every benchmark × model (empty and unparseable answers)."""
    return [
        f"{benchmark_dir(b)}/{m}/{kind}_drops.parquet"
        for b in BENCHMARKS
        for m in benchmark_models(b)
        for kind in ("generate", "score")
    ]
