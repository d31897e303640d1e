"""vLLM engine options of a model, from the config, and their checks.

Where they are set (later wins, key by key):

1. `backend.vllm_gpu_memory_utilization` / `backend.vllm_max_model_len` (the older keys, as
   `gpu_memory_utilization` / `max_model_len`);
2. `backend.vllm`: every local model;
3. `backend.models.<model spec>.vllm`: every job that runs that model spec (the generator,
   the judge, the translator's model, an eval model's base);
4. `eval_models[].backend.vllm`: that eval model's jobs.

Every name is a field of vLLM's `EngineArgs` (what `vllm.LLM(**kwargs)` takes): the installed
vLLM's where it is importable, else the list kept in `polyculture/data/vllm_engine_args.txt` for
the pinned version. A job books `tensor_parallel_size × pipeline_parallel_size` GPUs on one
node (:func:`engine_gpus`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from polyculture.backends.spec import PARALLEL_KEYS, engine_gpus, walk_config
from polyculture.errors import ConfigError

__all__ = ["PARALLEL_KEYS", "engine_gpus", "engine_groups", "engine_options", "engine_problems"]

#: The older flat keys of `backend:` and the EngineArgs names they set.
LEGACY_KEYS = {
    "vllm_gpu_memory_utilization": "gpu_memory_utilization",
    "vllm_max_model_len": "max_model_len",
}
ENGINE_ARGS_FILE = "vllm_engine_args.txt"


def pinned_engine_args() -> frozenset[str]:
    """The EngineArgs field names kept in the package for the pinned vLLM (see the file's
    header for its source and version)."""
    text = resources.files("polyculture").joinpath("data", ENGINE_ARGS_FILE).read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


@functools.cache
def engine_arg_names() -> tuple[frozenset[str], str]:
    """(valid names, where they come from): the installed vLLM's EngineArgs fields where vLLM
    is importable, else the pinned list."""
    try:
        import vllm
        from vllm.engine.arg_utils import EngineArgs
    except Exception:  # vLLM absent, or broken on this machine: the pinned list decides
        return pinned_engine_args(), f"the EngineArgs names kept for vllm ({ENGINE_ARGS_FILE})"
    names = frozenset(f.name for f in dataclasses.fields(EngineArgs) if not f.name.startswith("_"))
    return names, f"the installed vllm {vllm.__version__}'s EngineArgs"


def model_backend_entry(config: Mapping[str, Any], spec: str | None) -> Mapping[str, Any]:
    """`backend.models.<spec>` of a config (empty when the spec has none)."""
    models = config.get("backend", {}).get("models") or {}
    return (models.get(spec) if spec is not None else None) or {}


def engine_options(
    config: Mapping[str, Any],
    spec: str | None = None,
    eval_model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The vLLM engine options of a job running model `spec` (and eval model `eval_model`, an
    entry of eval_models), merged in the order of the module doc."""
    backend = config.get("backend", {})
    out = {new: backend[old] for old, new in LEGACY_KEYS.items() if old in backend}
    out.update(backend.get("vllm") or {})
    out.update(model_backend_entry(config, spec).get("vllm") or {})
    if eval_model is not None:
        out.update((eval_model.get("backend") or {}).get("vllm") or {})
    return out


def _engine_places(config: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, engine mapping) of every place a config sets vLLM options."""
    backend = config.get("backend", {})
    if backend.get("vllm") is not None:
        yield "backend.vllm", backend["vllm"]
    for spec, entry in (backend.get("models") or {}).items():
        if isinstance(entry, Mapping) and entry.get("vllm") is not None:
            yield f"backend.models.{spec}.vllm", entry["vllm"]
    for i, m in enumerate(config.get("eval_models") or []):
        vllm_opts = (m.get("backend") or {}).get("vllm") if isinstance(m, Mapping) else None
        if vllm_opts is not None:
            yield f"eval_models[{i}].backend.vllm", vllm_opts


def _closest(name: str, valid: frozenset[str]) -> str:
    """`; did you mean 'x'?` with the valid name closest to `name` (difflib, its default cutoff
    0.6), or ''."""
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _heads(model_dir: Path) -> int | None:
    """num_attention_heads of a local model directory's config.json (None when unknown)."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    heads = cfg.get(
        "num_attention_heads", (cfg.get("text_config") or {}).get("num_attention_heads")
    )
    return heads if isinstance(heads, int) else None


def engine_problems(
    config: Mapping[str, Any], names: tuple[frozenset[str], str] | None = None
) -> Iterator[ConfigError]:
    """Every problem of the config's vLLM options: a name that is no EngineArgs field (with the
    closest valid one), a parallel size that is no positive integer, and a tensor parallel size
    that does not divide the attention heads of a model whose config.json is here (a directory
    model; for hub and built-in models vLLM checks that itself when the engine starts)."""
    valid, source = names or engine_arg_names()
    for dotted, opts in _engine_places(config):
        if not isinstance(opts, Mapping):
            continue  # the schema reports the shape
        for key, value in opts.items():
            if key not in valid:
                yield ConfigError(
                    f"{dotted}.{key}",
                    f"'{key}' is not a vLLM engine option (checked against {source})"
                    f"{_closest(key, valid)}",
                )
            elif key in PARALLEL_KEYS and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                yield ConfigError(f"{dotted}.{key}", f"expected a positive integer, got {value!r}")
    for dotted, spec, eval_model in _local_models(config):
        tp = engine_options(config, spec, eval_model).get("tensor_parallel_size", 1)
        if not isinstance(tp, int) or tp <= 1:
            continue
        path = Path(spec).expanduser()
        heads = _heads(path) if path.is_dir() else None
        if heads is not None and heads % tp:
            yield ConfigError(
                dotted,
                f"tensor_parallel_size {tp} does not divide the {heads} attention heads of "
                f"'{spec}' (its config.json); vLLM would refuse to start",
            )


def _local_models(
    config: Mapping[str, Any],
) -> Iterator[tuple[str, str, Mapping[str, Any] | None]]:
    """(dotted key, spec, eval model entry or None) of every model spec of the config."""
    for dotted, key, value in walk_config(config):
        if not isinstance(value, str):
            continue
        if key == "model" and dotted.startswith("eval_models["):
            index = int(dotted[len("eval_models[") : dotted.index("]")])
            yield dotted, value, config["eval_models"][index]
        elif key in ("generator", "judge", "model", "base_model"):
            yield dotted, value, None


def node_gpu_problems(
    config: Mapping[str, Any], gpus_per_node: int, site_key: str = "gpus_per_node"
) -> Iterator[ConfigError]:
    """Every job of the config that would ask more GPUs than one node has (`gpus_per_node`,
    from the cluster profile's site block `site_key`): an engine of tensor × pipeline parallel
    size, and LoRA training's `train.gpus`; each needs its GPUs on one node."""
    seen: set[str] = set()
    for dotted, spec, eval_model in _local_models(config):
        if spec.startswith(("openai:", "openai@")):
            continue
        engine = engine_options(config, spec, eval_model)
        gpus = engine_gpus(engine)
        if gpus > gpus_per_node and dotted not in seen:
            seen.add(dotted)
            yield ConfigError(
                dotted,
                f"'{spec}' runs on tensor_parallel_size x pipeline_parallel_size = {gpus} GPUs "
                f"on one node, but a node has {gpus_per_node} (the profile's site setting "
                f"{site_key})",
            )
    gpus = (config.get("train") or {}).get("gpus")
    if isinstance(gpus, int) and gpus > gpus_per_node:
        yield ConfigError(
            "train.gpus",
            f"{gpus} GPUs on one node, but a node has {gpus_per_node} (the profile's site "
            f"setting {site_key})",
        )


def engine_groups(eval_models: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The eval models one engine serves, by group name (the group's first eval model's name),
    in config order: those sharing the base model spec and their own `backend` settings, the
    base model alone and each of its unmerged adapters (one multi-adapter engine); an eval model
    whose adapter is merged into the weights is a model of its own, served alone."""
    groups: dict[str, list[str]] = {}
    by_key: dict[tuple[str, str, str | None], str] = {}
    for m in eval_models:
        merged = m["name"] if m.get("adapter") and m.get("merge_adapter") else None
        key = (str(m["model"]), json.dumps(m.get("backend") or {}, sort_keys=True), merged)
        name = by_key.setdefault(key, m["name"])
        groups.setdefault(name, []).append(m["name"])
    return groups
