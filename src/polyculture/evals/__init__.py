"""Benchmarks as folders: the interface and registry (base) and what every benchmark shares
(tables). Each subpackage (e.g. ``blend_mcq``) is one benchmark."""

from polyculture.evals.base import (
    ITEM_SCHEMA,
    SCORE_SCHEMA,
    Benchmark,
    BenchmarkSpec,
    benchmark_entries,
    benchmark_inputs,
    benchmark_names,
    check_benchmark,
    fetches_data,
    load_benchmark,
    spec_from_settings,
    with_fetched_data,
)

__all__ = [
    "ITEM_SCHEMA",
    "SCORE_SCHEMA",
    "Benchmark",
    "BenchmarkSpec",
    "benchmark_entries",
    "benchmark_inputs",
    "benchmark_names",
    "check_benchmark",
    "fetches_data",
    "load_benchmark",
    "spec_from_settings",
    "with_fetched_data",
]
