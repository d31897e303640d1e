"""Counting tokens the way a model does: OpenAI models with their tiktoken encoding, shipped
offline by the `bpe-openai` package (tiktoken itself downloads its BPE files on first use);
local models with their own tokenizer where it is on disk (the Hugging Face cache, a model
directory, a built-in model built under results/models); otherwise
~4 characters a token (OpenAI's rule of thumb for English text; the plan says when it used it)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from polyculture.backends.spec import parse_model_spec

log = logging.getLogger(__name__)

#: Characters per token where no tokenizer is at hand (OpenAI: "1 token ~= 4 chars in English").
CHARS_PER_TOKEN = 4.0


def openai_encoding_name(model: str) -> str:
    """tiktoken's encoding of an OpenAI model (tiktoken/model.py's prefixes): o200k_base for
    gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and the o-series; cl100k_base for gpt-4 and gpt-3.5."""
    if model.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


def _cached(repo: str) -> bool:
    """Whether the local Hugging Face cache holds the repo's tokenizer (no transformers import,
    no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "tokenizer_config.json"), str)


@cache
def _openai_encoding(name: str) -> Any:
    import bpe_openai

    return bpe_openai.get_encoding(name)


class TokenCounter:
    """Token counts per model spec, each spec's tokenizer loaded once."""

    def __init__(
        self, builtin_dir: str | os.PathLike[str] | None = None, approximate: bool = False
    ) -> None:
        #: Where the built-in models are built (results/models): their tokenizers are read there.
        self.builtin_dir = builtin_dir
        #: Count every model by the character approximation (the same count on every host, no
        #: tokenizer loaded: what the workflow's shard counts use, polyculture.plan.work.shard_count).
        self.approximate_all = approximate
        self._tokenizers: dict[str, Any] = {}
        #: Specs counted by the character approximation.
        self.approximated: set[str] = set()

    def _tokenizer(self, spec: str) -> Any:
        if spec not in self._tokenizers:
            self._tokenizers[spec] = self._load(spec)
        return self._tokenizers[spec]

    def _load(self, spec: str) -> Any:
        parsed = parse_model_spec(spec)
        if self.approximate_all:
            return lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))
        if parsed.is_api and parsed.provider in (None, "openai"):
            enc = _openai_encoding(openai_encoding_name(str(parsed.api_model)))
            return lambda text: len(enc.encode(text))
        source = None
        if parsed.kind == "hub" and _cached(parsed.raw):
            source = parsed.raw
        elif parsed.kind == "directory" or (parsed.kind == "builtin" and self.builtin_dir):
            path = Path(parsed.path(self.builtin_dir or "."))
            source = str(path) if (path / "tokenizer_config.json").is_file() else None
        if source:
            try:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
                return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
            except Exception as exc:  # noqa: BLE001 - any failure to load means: not there
                log.info("no local tokenizer for %s (%s): approximating", spec, exc)
        self.approximated.add(spec)
        return lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))

    def total(self, spec: str, texts: Sequence[str]) -> int:
        """Tokens of all `texts` for model `spec`."""
        count = self._tokenizer(spec)
        return sum(count(t) for t in texts)

    def mean(self, spec: str, texts: Sequence[str]) -> float:
        """Mean tokens of `texts` (0 for none)."""
        return self.total(spec, texts) / len(texts) if texts else 0.0
