"""Sentence embeddings: float32, unit-norm rows, batched. One backend today, sentence-transformers,
registered in `polyculture.backends.registry.EMBEDDERS`; `load_embedder` dispatches by name.

Instruction-tuned embedders such as Qwen3-Embedding define named prompts for queries only;
pass `prompt_name` for query texts and leave it out for documents."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyculture.backends.registry import EMBEDDERS
from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)


#: The embedding backend of every embedder today.
DEFAULT_EMBEDDER = "sentence-transformers"


def load_embedder(model: str, device: str | None = None, *, kind: str = DEFAULT_EMBEDDER) -> Any:
    """The embedder registered as `kind` for a loadable path or hub id (resolve `builtin:` specs
    first). device None picks CUDA if present."""
    if model.startswith("builtin:"):
        raise ConfigError(
            "embedder", f"'{model}' is a model spec; resolve it to a path first (model_path)"
        )
    return EMBEDDERS.get(kind)(model, device)


@EMBEDDERS.register(DEFAULT_EMBEDDER)
def load_sentence_transformer(model: str, device: str | None = None) -> Any:
    """A SentenceTransformer for a loadable path or hub id; a local directory is loaded without
    any network access."""
    from sentence_transformers import SentenceTransformer

    local = Path(model).expanduser().is_dir()
    log.info("loading embedder %s (device %s)", model, device or "auto")
    return SentenceTransformer(
        str(Path(model).expanduser()) if local else model, device=device, local_files_only=local
    )


def embedding_dim(embedder: Any) -> int:
    """Length of the embedder's sentence vectors."""
    getter = (
        getattr(embedder, "get_embedding_dimension", None)
        or embedder.get_sentence_embedding_dimension
    )
    dim = getter()
    if dim is None:  # some models only know it after a forward pass
        dim = int(embedder.encode(["x"], convert_to_numpy=True).shape[1])
    return int(dim)


def embed_texts(
    embedder: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    prompt_name: str | None = None,
) -> np.ndarray:
    """Embeddings of `texts` as a float32 array (len(texts), dim) with unit-norm rows.

    prompt_name selects one of the embedder's named prompts (e.g. 'query'); it is passed only
    when given. An empty list gives an array of shape (0, dim)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError("texts", "expected a list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}]", f"expected a string, got {type(t).__name__}")
    if batch_size < 1:
        raise ConfigError("backend.embed_batch_size", f"expected >= 1, got {batch_size}")
    if prompt_name is not None:
        prompts = getattr(embedder, "prompts", None) or {}
        if prompt_name not in prompts:
            raise ConfigError(
                "prompt_name",
                f"the embedder has no prompt named {prompt_name!r}; "
                f"it has {', '.join(sorted(prompts)) or 'none'}",
            )
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(embedder)), dtype=np.float32)
    kwargs: dict[str, Any] = {"prompt_name": prompt_name} if prompt_name is not None else {}
    vectors = embedder.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=len(texts) > batch_size,
        **kwargs,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)
