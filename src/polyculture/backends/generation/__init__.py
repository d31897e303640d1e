"""Text generation backends behind one `Generator` interface (polyculture.backends.generation.base:
sampling settings, seeds, the interface), each registered by name in
`polyculture.backends.registry.GENERATORS`: `hf` (transformers), `vllm` (vLLM) and `openai`
(OpenAI-compatible APIs, chosen by an API model spec). `load_generator` dispatches by name.

Adding a backend: a module here that defines a `Generator` subclass and registers its loader
with `@GENERATORS.register("<name>")`, and its import below."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

# the backends register themselves on import, in this order (that of BACKENDS)
# isort: off
import polyculture.backends.generation.hf  # noqa: F401
import polyculture.backends.generation.vllm  # noqa: F401
import polyculture.backends.generation.openai  # noqa: F401

# isort: on
from polyculture.backends.engine import engine_options
from polyculture.backends.generation.base import (
    Generator,
    LoadOptions,
    Sampling,
    derive_seed,
    local_adapter,
    sampling_from_config,
)
from polyculture.backends.generation.openai import API_BACKEND
from polyculture.backends.registry import GENERATORS
from polyculture.backends.spec import is_api_spec
from polyculture.errors import ConfigError

__all__ = [
    "BACKENDS",
    "Generator",
    "LoadOptions",
    "Sampling",
    "derive_seed",
    "generator_kwargs",
    "load_generator",
    "resolve_backend",
    "sampling_from_config",
    "vllm_available",
]

log = logging.getLogger(__name__)

#: The values of the config's backend.generation: auto and every backend a config may name.
BACKENDS = ("auto", *GENERATORS.names(selectable_only=True))


def vllm_available() -> bool:
    """Whether vllm is importable here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str) -> str:
    """A registered backend's name for a backend name; 'auto' is vllm where importable and CUDA
    is present, else hf."""
    if backend not in BACKENDS:
        raise ConfigError(
            "backend.generation",
            f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}",
        )
    if backend != "auto":
        return backend
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "hf"


def generator_kwargs(backend_config: Mapping[str, Any]) -> dict[str, Any]:
    """load_generator keyword arguments from the config's `backend:` section."""
    kwargs: dict[str, Any] = {}
    if "generation" in backend_config:
        kwargs["backend"] = backend_config["generation"]
    for key in ("batch_size", "dtype", "chat_template"):
        if key in backend_config:
            kwargs[key] = backend_config[key]
    if backend_config.get("engine") is not None:
        # the job's model's engine options, merged by the workflow (backends.engine)
        kwargs["engine"] = dict(backend_config["engine"])
    else:
        kwargs["engine"] = engine_options({"backend": backend_config})
    if backend_config.get("openai") is not None:
        kwargs["openai"] = backend_config["openai"]
    return kwargs


def load_generator(
    model: str,
    *,
    backend: str = "auto",
    adapter: str | None = None,
    merge_adapter: bool = False,
    adapters: Mapping[str, str] | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    openai: Mapping[str, Any] | None = None,
    chat_template: str | None = None,
    engine: Mapping[str, Any] | None = None,
    **vllm_options: Any,
) -> Generator:
    """Load a chat model (a loadable path or hub id: resolve `builtin:` specs first) on the
    backend registered as `backend` (auto: see resolve_backend), optionally with a PEFT adapter
    (merged into the weights if merge_adapter), or several served by name (`adapters`: name ->
    directory or hub id; hf and vllm; switched with Generator.use_adapter, the base model
    answering until one is chosen).

    `engine` (vLLM EngineArgs names, see polyculture.backends.engine) and vllm_options go to
    vllm.LLM (a `vllm_` prefix is dropped, so the config's vllm_gpu_memory_utilization /
    vllm_max_model_len can be passed as they are); the hf backend ignores them but for their
    GPU count (more than one: the model is spread over the GPUs with device_map auto).

    An API model spec (`openai:<model>`, `openai@<endpoint>:<model>`) is served by the openai
    backend with the config's backend.openai settings, whatever `backend` says."""
    if adapters and (adapter or merge_adapter or is_api_spec(model)):
        raise ConfigError(
            "adapters", f"{model}: several adapters need a local model without adapter/merge"
        )
    options = LoadOptions(
        adapters={name: str(local_adapter(a)) for name, a in (adapters or {}).items()},
        adapter=local_adapter(adapter) if not is_api_spec(model) else adapter,
        merge_adapter=merge_adapter,
        batch_size=batch_size,
        dtype=dtype,
        chat_template=chat_template,
        openai=openai,
        engine={**(engine or {}), **vllm_options},
    )
    if is_api_spec(model):
        return GENERATORS.get(API_BACKEND)(model, options)
    if model.startswith("builtin:"):
        raise ConfigError(
            "model", f"'{model}' is a model spec; resolve it to a path first (model_path)"
        )
    chosen = resolve_backend(backend)
    log.info("loading %s on the %s backend (adapter: %s)", model, chosen, adapter)
    return GENERATORS.get(chosen)(model, options)
