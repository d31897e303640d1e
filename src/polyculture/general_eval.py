"""General capability through lm-evaluation-harness: multilingual HellaSwag and Global MMLU.

One call evaluates one model (a base model, optionally with a PEFT adapter) on a list of
lm-evaluation-harness tasks and keeps every per-item result:

- hf backend: lm_eval's ``hf`` model with ``pretrained=<model>,peft=<adapter>`` (the adapter is
  applied at load time; merged first when asked);
- vllm backend (CUDA + vllm installed, or asked for): lm_eval's ``vllm`` model with the adapter
  as a LoRA request (``lora_local_path``, ``max_lora_rank`` from the adapter's rank).

Tasks are named as lm_eval names them (``hellaswag_de``, ``global_mmlu_full_de``, ...) or come
from a task folder of custom YAMLs (the demo's ``dataset_path: json`` tasks over local files).
lm_eval runs from inside that folder, so relative ``data_files`` in its YAMLs resolve against
it. Each configured task carries a benchmark name, a language and the metric the comparison uses
(HellaSwag: acc_norm; MMLU: acc). Groups (e.g. Global MMLU's subject groups) are supported: their
subtasks' items count as the group's items.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)

METRIC_SCHEMA = {
    "model": pl.String,
    "task": pl.String,
    "benchmark": pl.String,
    "language": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "stderr": pl.Float64,
    "n": pl.Int64,
}

ITEM_SCHEMA = {
    "model": pl.String,
    "task": pl.String,
    "subtask": pl.String,
    "benchmark": pl.String,
    "language": pl.String,
    "doc_id": pl.Int64,
    "doc_hash": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}


@dataclass(frozen=True)
class TaskSpec:
    """One configured lm_eval task: its name, benchmark, language and the compared metric."""

    task: str
    benchmark: str
    language: str
    metric: str = "acc"


def task_specs(entries: Sequence[Mapping[str, Any]]) -> list[TaskSpec]:
    """TaskSpecs from the config's evaluate.general.tasks list; names must be unique."""
    specs = []
    for i, e in enumerate(entries):
        missing = [k for k in ("task", "benchmark", "language") if not e.get(k)]
        if missing:
            raise ConfigError(f"evaluate.general.tasks[{i}]", f"missing {', '.join(missing)}")
        specs.append(TaskSpec(e["task"], e["benchmark"], e["language"], e.get("metric", "acc")))
    names = [s.task for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError("evaluate.general.tasks", f"task(s) listed twice: {', '.join(dup)}")
    return specs


def resolve_eval_backend(backend: str) -> str:
    """'hf' or 'vllm'; 'auto' picks vllm where it is installed and CUDA is present."""
    from polyculture.llm import resolve_backend

    return resolve_backend(backend)


def lm_eval_model(
    model: str,
    *,
    adapter: str | None = None,
    backend: str = "hf",
    dtype: str = "auto",
    vllm_options: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """lm_eval model type and model_args for a model and optional PEFT adapter.

    Paths are made absolute (lm_eval runs from the task folder)."""

    def absolute(p: str) -> str:
        return str(Path(p).resolve()) if Path(p).exists() else p

    model = absolute(model)
    if backend == "hf":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        args: dict[str, Any] = {
            "pretrained": model,
            "device": device,
            "dtype": dtype if dtype != "auto" else ("bfloat16" if device == "cuda" else "float32"),
        }
        if adapter:
            args["peft"] = absolute(adapter)
        return "hf", args
    if backend == "vllm":
        from polyculture.llm import adapter_rank, vllm_lora_rank

        args = {"pretrained": model, "dtype": dtype}
        for key, value in (vllm_options or {}).items():
            args[key.removeprefix("vllm_")] = value
        if adapter:
            args["lora_local_path"] = absolute(adapter)
            args["max_lora_rank"] = vllm_lora_rank(adapter_rank(adapter))
        return "vllm", args
    raise ConfigError(
        "backend.generation", f"unknown lm_eval backend {backend!r}; expected hf or vllm"
    )


def _task_manager(task_dir: str | None, names: Sequence[str]) -> Any:
    """A TaskManager over `task_dir`, with lm_eval's own tasks only if some name needs them."""
    from lm_eval.tasks import TaskManager

    if task_dir:
        tm = TaskManager(include_path=str(task_dir), include_defaults=False)
        if all(n in tm.all_tasks for n in names):
            return tm
        return TaskManager(include_path=str(task_dir))
    return TaskManager()


def run_lm_eval(
    model_type: str,
    model_args: Mapping[str, Any],
    specs: Sequence[TaskSpec],
    *,
    task_dir: str | os.PathLike[str] | None = None,
    num_fewshot: int | None = None,
    limit: int | None = None,
    batch_size: int | str = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Run lm-evaluation-harness (per-sample logging on) and return its results dict.

    Fails naming the task folder and the unknown names when a task cannot be found."""
    import lm_eval

    names = [s.task for s in specs]
    folder = Path(task_dir).resolve() if task_dir else None
    if folder is not None and not folder.is_dir():
        raise InputError(folder, "task folder does not exist")
    with contextlib.chdir(folder) if folder else contextlib.nullcontext():
        tm = _task_manager(str(folder) if folder else None, names)
        unknown = [n for n in names if n not in tm.all_tasks]
        if unknown:
            where = f" or in {folder}" if folder else ""
            raise ConfigError(
                "evaluate.general.tasks",
                f"unknown lm_eval task(s) {', '.join(unknown)} (not among lm_eval's tasks{where})",
            )
        results = lm_eval.simple_evaluate(
            model=model_type,
            model_args=dict(model_args),
            tasks=names,
            task_manager=tm,
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            log_samples=True,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            bootstrap_iters=0,
        )
    if results is None:
        raise RuntimeError("lm_eval returned no results (non-zero rank of a distributed run?)")
    return dict(results)


def _leaf_tasks(results: Mapping[str, Any], name: str) -> list[str]:
    """Leaf tasks (with samples) under a task or group name."""
    groups = results.get("group_subtasks") or {}
    if name in groups and groups[name]:
        return [leaf for sub in groups[name] for leaf in _leaf_tasks(results, sub)]
    return [name]


def item_table(results: Mapping[str, Any], specs: Sequence[TaskSpec], model: str) -> pl.DataFrame:
    """One row per (task item, metric): the per-item scores that the paired bootstrap uses."""
    samples = results.get("samples") or {}
    rows = []
    for spec in specs:
        for leaf in _leaf_tasks(results, spec.task):
            leaf_samples = samples.get(leaf, [])
            # a task with several filters logs each item once per filter: keep the first filter
            first_filter = leaf_samples[0].get("filter", "none") if leaf_samples else "none"
            for s in leaf_samples:
                if s.get("filter", "none") != first_filter:
                    continue
                for metric in s.get("metrics", []):
                    if metric in s:
                        rows.append(
                            {
                                "model": model,
                                "task": spec.task,
                                "subtask": leaf,
                                "benchmark": spec.benchmark,
                                "language": spec.language,
                                "doc_id": int(s["doc_id"]),
                                "doc_hash": s.get("doc_hash") or "",
                                "metric": metric,
                                "value": float(s[metric]),
                            }
                        )
    return pl.DataFrame(rows, schema=ITEM_SCHEMA).sort(["task", "subtask", "doc_id", "metric"])


def metric_table(items: pl.DataFrame, specs: Sequence[TaskSpec] | None = None) -> pl.DataFrame:
    """Mean and standard error per task, from the per-item table (items weighted equally, also
    across a group's subtasks): of each task's compared metric when `specs` are given (the
    model's score on the task, as other stages read it), else of every metric."""
    if specs is not None:
        chosen = pl.DataFrame(
            {"task": [s.task for s in specs], "metric": [s.metric for s in specs]}
        )
        items = items.join(chosen, on=["task", "metric"], how="semi")
    return (
        items.group_by(["model", "task", "benchmark", "language", "metric"], maintain_order=True)
        .agg(
            value=pl.col("value").mean(),
            stderr=pl.col("value").std(ddof=1) / pl.len().sqrt(),
            n=pl.len().cast(pl.Int64),
        )
        .select(list(METRIC_SCHEMA))
        .cast(METRIC_SCHEMA)
        .sort(["task", "metric"])
    )


def check_items(items: pl.DataFrame, specs: Sequence[TaskSpec]) -> None:
    """Every configured task produced items and carries its comparison metric."""
    for spec in specs:
        got = items.filter(pl.col("task") == spec.task)
        if got.height == 0:
            raise InputError(spec.task, "lm_eval returned no per-item results for this task")
        if spec.metric not in set(got["metric"].to_list()):
            raise ConfigError(
                "evaluate.general.tasks",
                f"task {spec.task} has no metric {spec.metric!r} "
                f"(it reports {', '.join(sorted(set(got['metric'].to_list())))})",
            )


def sample_records(results: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    """lm_eval's per-sample logs (document, arguments, responses, metrics), one record per item,
    with the model and leaf task added; JSON-safe."""
    import json

    out = []
    for task, samples in sorted((results.get("samples") or {}).items()):
        for s in samples:
            record = json.loads(json.dumps(s, default=str, ensure_ascii=False))
            out.append({"model": model, "task": task, **record})
    return out


def results_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """The reproducible part of lm_eval's results (no dates, timings or environment)."""
    keep = (
        "results",
        "groups",
        "group_subtasks",
        "versions",
        "n-shot",
        "higher_is_better",
        "n-samples",
    )
    return {k: results[k] for k in keep if k in results}


def prepare_model(
    model: str, adapter: str | None, merge_adapter: bool, workdir: str
) -> tuple[str, str | None]:
    """The (model, adapter) lm_eval loads: the adapter merged into a copy of the model under
    `workdir` when asked, else both as given (the adapter applied at load time)."""
    if adapter and merge_adapter:
        from polyculture.llm import merge_adapter_to_dir

        merged = str(Path(workdir) / "merged")
        log.info("merging adapter %s into %s", adapter, model)
        return merge_adapter_to_dir(model, adapter, merged), None
    return model, adapter
