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

Prompt format per task, as users run instruct models: ``apply_chat_template`` (the prompt goes
through the model's chat template), ``fewshot_as_multiturn`` (few-shot examples as alternating
user/assistant turns; needs the chat template) and ``system_instruction``. Tasks with different
settings run in separate lm_eval calls on one loaded model, merged into one results dict.

Global-MMLU's items carry the dataset's ``cultural_sensitivity_label`` (CS: culturally sensitive,
CA: culturally agnostic); the item table keeps it (``cultural_label``), so the comparison reports
CS and CA items separately: the direct test of whether cultural training moved cultural items.
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
    "cultural_label": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}
CULTURAL_LABEL_FIELD = "cultural_sensitivity_label"  # Global-MMLU's CS / CA label


@dataclass(frozen=True)
class TaskSpec:
    """One configured lm_eval task: its name, benchmark, language and the compared metric."""

    task: str
    benchmark: str
    language: str
    metric: str = "acc"
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None

    @property
    def prompt_format(self) -> tuple[bool, bool, str | None]:
        return (self.apply_chat_template, self.fewshot_as_multiturn, self.system_instruction)


PROMPT_KEYS = ("apply_chat_template", "fewshot_as_multiturn", "system_instruction")


def task_specs(
    entries: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any] | None = None
) -> list[TaskSpec]:
    """TaskSpecs from the config's evaluate.general.tasks list (prompt-format keys a task leaves
    out come from `defaults`, the section's); names must be unique; fewshot_as_multiturn needs
    apply_chat_template."""
    defaults = defaults or {}
    specs = []
    for i, e in enumerate(entries):
        missing = [k for k in ("task", "benchmark", "language") if not e.get(k)]
        if missing:
            raise ConfigError(f"evaluate.general.tasks[{i}]", f"missing {', '.join(missing)}")
        fmt = {k: e[k] if e.get(k) is not None else defaults.get(k) for k in PROMPT_KEYS}
        spec = TaskSpec(
            e["task"],
            e["benchmark"],
            e["language"],
            e.get("metric", "acc"),
            bool(fmt["apply_chat_template"]),
            bool(fmt["fewshot_as_multiturn"]),
            fmt["system_instruction"] or None,
        )
        if spec.fewshot_as_multiturn and not spec.apply_chat_template:
            raise ConfigError(
                f"evaluate.general.tasks[{i}].fewshot_as_multiturn",
                f"task {spec.task}: few-shot examples as turns need apply_chat_template: true",
            )
        specs.append(spec)
    names = [s.task for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError("evaluate.general.tasks", f"task(s) listed twice: {', '.join(dup)}")
    return specs


def resolve_eval_backend(backend: str) -> str:
    """'hf' or 'vllm'; 'auto' picks vllm where it is installed and CUDA is present."""
    from polyculture.backends.generation import resolve_backend

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
            from polyculture.backends.generation.base import tokenizer_source

            args["peft"] = absolute(adapter)
            if tokenizer_source(model, adapter) == adapter:
                # the adapter's own tokenizer and chat template; lm_eval's hf model then resizes
                # the embeddings to it before applying the adapter (added tokens)
                args["tokenizer"] = absolute(adapter)
        return "hf", args
    if backend == "vllm":
        from polyculture.backends.generation.base import adapter_rank
        from polyculture.backends.generation.vllm import vllm_lora_rank

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


#: lm_eval's model for an API model: OpenAI-compatible chat completions (it sends the chat
#: messages, so every task runs through the chat template; it batches nothing).
API_MODEL_TYPE = "local-chat-completions"
#: The variable lm_eval's local-chat-completions reads the key from
#: (lm_eval/models/openai_completions.py: LocalCompletionsAPI.api_key).
LM_EVAL_KEY_ENV = "OPENAI_API_KEY"


def api_lm_eval_model(
    spec: str,
    openai: Mapping[str, Any] | None,
    *,
    seed: int = 0,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """lm_eval model type, model_args and the environment (the key, under the variable lm_eval
    reads) for an API model spec: the endpoint's chat-completions URL, the served model name,
    and the config's backend.openai concurrency, retries and timeout. The key stays out of
    model_args, which lm_eval logs."""
    from polyculture.backends.generation.openai import ApiSettings, endpoint_of
    from polyculture.backends.spec import parse_api_spec

    settings = ApiSettings.from_config(
        {k: v for k, v in (openai or {}).items() if k not in ("cache_dir", "usage_path")}
    )
    endpoint = endpoint_of(spec, settings)
    _, served = parse_api_spec(spec)
    args: dict[str, Any] = {
        "model": served,
        "base_url": f"{endpoint.base_url.rstrip('/')}/chat/completions",
        "num_concurrent": settings.max_concurrency,
        "max_retries": settings.max_retries,
        "timeout": int(settings.timeout_s),
        "seed": seed,
    }
    return API_MODEL_TYPE, args, {LM_EVAL_KEY_ENV: endpoint.api_key(environ)}


def task_entries(task_dir: str | os.PathLike[str] | None, names: Sequence[str]) -> Any:
    """The task, group and tag entries (polyculture.lm_eval_tasks) of lm_eval's task index:
    the task folder's, with lm_eval's own tasks where some name needs them."""
    from polyculture.lm_eval_tasks import entries_from_index

    folder = str(Path(task_dir).resolve()) if task_dir else None
    return entries_from_index(_task_manager(folder, names).task_index)


def api_task_split(
    specs: Sequence[TaskSpec], entries: Any
) -> tuple[list[TaskSpec], dict[str, str]]:
    """The tasks an API model runs (generate_until only, each through the chat template, as
    chat completions take messages) and the refused ones with the reason, naming their output
    type (polyculture.lm_eval_tasks.api_refusal)."""
    from dataclasses import replace

    from polyculture.lm_eval_tasks import api_refusal

    run, refused = [], {}
    for spec in specs:
        reason = api_refusal(spec.task, entries)
        if reason is None:
            run.append(replace(spec, apply_chat_template=True))
        else:
            refused[spec.task] = reason
            log.warning("lm-eval task %s is refused for an API model: %s", spec.task, reason)
    return run, refused


def runnable_tasks(
    specs: Sequence[TaskSpec], model: str, task_dir: str | os.PathLike[str] | None
) -> tuple[list[TaskSpec], dict[str, str]]:
    """The tasks model `model` (a path, hub id or API spec) runs, and those refused to it with
    the reason: all for a model with weights; for an API model, its generative tasks
    (:func:`api_task_split`, their output types read from lm_eval's task index)."""
    from polyculture.backends.spec import is_api_spec

    if not is_api_spec(model):
        return list(specs), {}
    return api_task_split(specs, task_entries(task_dir, [s.task for s in specs]))


def model_for_lm_eval(
    model: Mapping[str, Any], backend: Mapping[str, Any], workdir: str, *, seed: int = 0
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """lm_eval model type, model_args and environment of an eval model's load settings (`model`:
    model, adapter, merge_adapter) and the job's backend settings: an API model through
    :func:`api_lm_eval_model`; a model with weights through :func:`lm_eval_model`, its adapter
    merged under `workdir` first when asked (:func:`prepare_model`)."""
    from polyculture.backends.spec import is_api_spec

    if is_api_spec(model["model"]):
        return api_lm_eval_model(model["model"], backend.get("openai"), seed=seed)
    path, adapter = prepare_model(model["model"], model["adapter"], model["merge_adapter"], workdir)
    model_type, args = lm_eval_model(
        path,
        adapter=adapter,
        backend=resolve_eval_backend(backend.get("generation", "auto")),
        dtype=backend.get("dtype", "auto"),
        vllm_options=backend.get("engine"),
    )
    return model_type, args, {}


#: lm_eval's batch size per backend where `evaluate.general.batch_size` is null (the default).
#: vLLM schedules its own batches (continuous batching): 'auto' makes lm_eval's vllm model hand
#: it every request of a task in one call, where a fixed size N cuts them into calls of N
#: requests that each wait for their slowest (lm_eval vllm_causallms: get_batched(n=batch_size)).
#: hf: 8, the earlier default of both (our choice: a batch of 1-8B activations fits beside the
#: weights on one GPU; lm_eval's 'auto' search would change the padding, so the numbers).
#: Prefix caching does not help lm_eval's multiple choice on vLLM: its loglikelihood requests ask
#: for prompt log-probabilities, for which vLLM 0.32 skips reading the prefix cache, so each of
#: Global-MMLU's four choices prefills the whole question again (benchmarks/bench_lm_eval_prefix:
#: 0 hits on the CPU vLLM; the same sequences without prompt log-probabilities hit 58% of their
#: prompt tokens).
DEFAULT_BATCH_SIZE: dict[str, int | str] = {"vllm": "auto", "hf": 8}


def batch_size_for(model_type: str, batch_size: int | str | None) -> int | str:
    """The lm_eval batch size of a run: the configured one, else the backend's default (an API
    model's chat completions: 1, which lm_eval enforces)."""
    if model_type == API_MODEL_TYPE:
        return 1
    if batch_size is None:
        if model_type not in DEFAULT_BATCH_SIZE:
            raise ConfigError(
                "backend.generation", f"unknown lm_eval backend {model_type!r}; expected hf or vllm"
            )
        return DEFAULT_BATCH_SIZE[model_type]
    ok_str = isinstance(batch_size, str) and (
        batch_size == "auto"
        or (batch_size.startswith("auto:") and batch_size[5:].isdigit() and int(batch_size[5:]) > 0)
    )
    ok_int = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    if not (ok_str or ok_int):
        raise ConfigError(
            "evaluate.general.batch_size",
            f"expected an integer >= 1, 'auto', 'auto:N' or null, got {batch_size!r}",
        )
    return batch_size


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

    Tasks are run in groups of equal prompt format (chat template, few-shot as turns, system
    instruction), one lm_eval call per group on one loaded model; the groups' results are
    merged. Fails naming the task folder and the unknown names when a task cannot be found."""
    import lm_eval
    from lm_eval.api.registry import get_model

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
        groups: dict[tuple[bool, bool, str | None], list[str]] = {}
        for s in specs:
            groups.setdefault(s.prompt_format, []).append(s.task)
        lm = (
            get_model(model_type).create_from_arg_obj(
                dict(model_args), {"batch_size": batch_size, "max_batch_size": None, "device": None}
            )
            if len(groups) > 1
            else None
        )
        merged: dict[str, Any] = {}
        for (chat, multiturn, system), group in groups.items():
            results = lm_eval.simple_evaluate(
                model=lm if lm is not None else model_type,
                model_args=None if lm is not None else dict(model_args),
                tasks=group,
                task_manager=tm,
                num_fewshot=num_fewshot,
                limit=limit,
                batch_size=batch_size,
                log_samples=True,
                apply_chat_template=chat,
                fewshot_as_multiturn=multiturn,
                system_instruction=system,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                bootstrap_iters=0,
            )
            if results is None:
                raise RuntimeError(
                    "lm_eval returned no results (non-zero rank of a distributed run?)"
                )
            merge_results(merged, dict(results))
    return merged


_MERGED_KEYS = (
    "results",
    "groups",
    "group_subtasks",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
    "samples",
)


def merge_results(into: dict[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """Merge one lm_eval results dict into another (per-task mappings united; other keys of the
    first call kept)."""
    for key, value in results.items():
        if key in _MERGED_KEYS and isinstance(value, Mapping):
            into.setdefault(key, {}).update(value)
        else:
            into.setdefault(key, value)
    return into


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
                                "cultural_label": _cultural_label(s.get("doc")),
                                "metric": metric,
                                "value": float(s[metric]),
                            }
                        )
    return pl.DataFrame(rows, schema=ITEM_SCHEMA).sort(["task", "subtask", "doc_id", "metric"])


def _cultural_label(doc: Any) -> str | None:
    """An item's Global-MMLU cultural sensitivity label (CS / CA), or None where it has none."""
    if not isinstance(doc, Mapping):
        return None
    label = doc.get(CULTURAL_LABEL_FIELD)
    return str(label).strip().upper() if label not in (None, "") else None


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


def run_summary(
    results: Mapping[str, Any], refused: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The reproducible part of lm_eval's results (no dates, timings or environment), and the
    tasks refused to the model with the reason (`refused`: an API model's log-likelihood
    tasks), where there are any."""
    keep = (
        "results",
        "groups",
        "group_subtasks",
        "versions",
        "n-shot",
        "higher_is_better",
        "n-samples",
    )
    out = {k: results[k] for k in keep if k in results}
    if refused:
        out["refused"] = dict(refused)
    return out


def prepare_model(
    model: str, adapter: str | None, merge_adapter: bool, workdir: str
) -> tuple[str, str | None]:
    """The (model, adapter) lm_eval loads: the adapter merged into a copy of the model under
    `workdir` when asked, else both as given (the adapter applied at load time); a hub adapter
    id is read from its snapshot in the Hugging Face cache."""
    from polyculture.backends.generation.base import local_adapter

    adapter = local_adapter(adapter)
    if adapter and merge_adapter:
        from polyculture.backends.generation.base import merge_adapter_to_dir

        merged = str(Path(workdir) / "merged")
        log.info("merging adapter %s into %s", adapter, model)
        return merge_adapter_to_dir(model, adapter, merged), None
    return model, adapter
