"""What a rule's job needs, opened from its params and freed at exit: a generator, a translator,
an embedder. The glue in scripts/ holds these context managers instead of repeating the
`load_*` calls and their keyword arguments.

The params are those the rules pass: a generating rule's `model` (a loadable path or hub id, or
an eval model's load settings {model, adapter, merge_adapter}) and `backend` (the config's
`backend:` section, as `generation_params()` gives it); a translating rule's `translator` (the
config's translator settings, model resolved to a path) and the same `backend`."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from polyculture.backends.generation import Generator, generator_kwargs, load_generator
from polyculture.backends.generation.base import adapter_brings, local_adapter
from polyculture.backends.translation import Translator, TranslatorSettings, load_translator

#: An eval model's load settings, as the rules pass them (eval_model_params).
ModelParams = str | Mapping[str, Any]


def generator_call(model: ModelParams, backend: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model path and the load_generator keyword arguments for a rule's `model` and
    `backend` params (an adapter and its merge flag only where the params name them)."""
    kwargs = generator_kwargs(backend)
    if isinstance(model, str):
        return model, kwargs
    return str(model["model"]), {
        "adapter": model.get("adapter"),
        "merge_adapter": model.get("merge_adapter", False),
        **kwargs,
    }


@dataclass(frozen=True)
class EnginePlan:
    """One engine of a job serving several eval models: load_generator's path and keyword
    arguments, the eval models it answers for (in config order) and whether it switches
    adapters by their names (Generator.use_adapter)."""

    path: str
    kwargs: dict[str, Any]
    members: list[str]
    switches: bool


def engine_plans(
    model: str, members: Sequence[Mapping[str, Any]], backend: Mapping[str, Any]
) -> list[EnginePlan]:
    """The engines that serve eval models `members` ({name, adapter, merge_adapter}, as
    eval_model_params gives them, sharing the base `model`): one for the base model and every
    adapter that is LoRA weights alone, switched by name; one of its own for an adapter that
    brings its own tokenizer, chat template or embeddings (base.adapter_brings), loaded as a
    single eval model's job loads it. A lone adapter (and a merged one) also loads that way."""
    with_adapter = [m for m in members if m.get("adapter")]
    if len(members) == 1:
        _, single = generator_call({"model": model, **members[0]}, backend)
        return [EnginePlan(model, single, [str(members[0]["name"])], False)]
    alone = [
        m
        for m in with_adapter
        if m.get("merge_adapter") or adapter_brings(str(local_adapter(m["adapter"])))
    ]
    shared = [m for m in members if m not in alone]
    plans = []
    if shared:
        kwargs = generator_kwargs(backend)
        adapters = {str(m["name"]): str(m["adapter"]) for m in shared if m.get("adapter")}
        if adapters:
            kwargs["adapters"] = adapters
        plans.append(EnginePlan(model, kwargs, [str(m["name"]) for m in shared], bool(adapters)))
    for m in alone:
        _, single = generator_call({"model": model, **m}, backend)
        plans.append(EnginePlan(model, single, [str(m["name"])], False))
    return plans


def engine_identities(
    spec: str, model: str, members: Sequence[Mapping[str, Any]], backend: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The answer-cache identity (polyculture.backends.answer_cache.model_identity) of every
    member of an engine, by name: the spec, the base model's and the adapter's fingerprints, and
    the load settings that change answers (the backend as resolved here, dtype, batch size, chat
    template, engine options, merge flag)."""
    from polyculture.backends.answer_cache import model_identity
    from polyculture.backends.generation import resolve_backend
    from polyculture.backends.spec import is_api_spec

    kwargs = generator_kwargs(backend)
    settings = {
        "backend": "openai"
        if is_api_spec(model)
        else resolve_backend(kwargs.get("backend", "auto")),
        **{k: kwargs.get(k) for k in ("dtype", "batch_size", "chat_template", "engine")},
    }
    out = {}
    for m in members:
        adapter = local_adapter(m["adapter"]) if m.get("adapter") else None
        merged = {"merge_adapter": bool(m.get("merge_adapter")) and adapter is not None}
        out[str(m["name"])] = model_identity(spec, model, adapter, {**settings, **merged})
    return out


@contextmanager
def lazy_engine(path: str, kwargs: Mapping[str, Any]) -> Iterator[Callable[[], Generator]]:
    """A function that loads the generator (load_generator(path, **kwargs)) on its first call
    and returns it after; the generator, if loaded, is closed at exit."""
    loaded: list[Generator] = []

    def get() -> Generator:
        if not loaded:
            loaded.append(load_generator(path, **kwargs))
        return loaded[0]

    try:
        yield get
    finally:
        for generator in loaded:
            generator.close()
        free_memory()


def free_memory() -> None:
    """Give freed model memory back (the Python heap, and CUDA's cache where CUDA is present)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def open_generator(
    model: ModelParams, backend: Mapping[str, Any], *, load: bool = True
) -> Iterator[Generator | None]:
    """The generator a rule's `model` and `backend` params name, closed at exit; None where
    `load` is false (a job with nothing to generate loads no model)."""
    if not load:
        yield None
        return
    path, kwargs = generator_call(model, backend)
    generator = load_generator(path, **kwargs)
    try:
        yield generator
    finally:
        generator.close()


def translator_call(
    translator: Mapping[str, Any], backend: Mapping[str, Any], generator: Generator | None = None
) -> tuple[TranslatorSettings, dict[str, Any]]:
    """The settings and load_translator keyword arguments for a rule's `translator` and
    `backend` params; `generator` (a loaded Generator of the translator's own model) is reused
    by an llm translator instead of a second copy."""
    kwargs: dict[str, Any] = {
        "backend": backend["generation"],
        "batch_size": backend["batch_size"],
        "api": backend.get("openai"),
    }
    if generator is not None:
        kwargs["generator"] = generator
    return TranslatorSettings(**translator), kwargs


def shares_model(translator: Mapping[str, Any], model: ModelParams) -> bool:
    """Whether an llm translator runs the very model a rule's `model` params name (the loaded
    generator can then translate: no second copy)."""
    path = model if isinstance(model, str) else model["model"]
    return translator.get("kind") == "llm" and translator.get("model") == path


class LazyTranslator:
    """A translator loaded on its first use (a job that finds nothing to translate loads none)."""

    def __init__(self, load: Callable[[], Translator]) -> None:
        self._load = load
        self.loaded: Translator | None = None

    def get(self) -> Translator:
        """The translator, loaded now if it is not yet."""
        if self.loaded is None:
            self.loaded = self._load()
        return self.loaded

    def supports(self, lang: str) -> bool:
        return self.get().supports(lang)

    def translate(
        self, texts: Sequence[str], source: str | Sequence[str], target: str | Sequence[str]
    ) -> list[str]:
        return self.get().translate(texts, source, target)


@contextmanager
def open_translator(
    translator: Mapping[str, Any],
    backend: Mapping[str, Any],
    *,
    generator: Generator | None = None,
    load: bool = True,
    lazy: bool = False,
) -> Iterator[Any]:
    """The translator a rule's `translator` and `backend` params describe; None where `load` is
    false; loaded on first use where `lazy`. At exit a generator the translator loaded for
    itself is closed (one passed in belongs to the caller) and the model memory is freed."""
    if not load:
        yield None
        return
    settings, kwargs = translator_call(translator, backend, generator)
    handle = LazyTranslator(lambda: load_translator(settings, **kwargs))
    try:
        yield handle if lazy else handle.get()
    finally:
        own = getattr(handle.loaded, "generator", None)
        if own is not None and own is not generator:
            own.close()
        if handle.loaded is not None:
            handle.loaded = None
            free_memory()


@contextmanager
def open_embedder(model: str, *, load: bool = True) -> Iterator[Any]:
    """The embedder at a loadable path or hub id (the device CUDA where present), freed at exit;
    None where `load` is false."""
    from polyculture.backends.embedding import load_embedder

    if not load:
        yield None
        return
    embedder = load_embedder(model)
    try:
        yield embedder
    finally:
        del embedder
        free_memory()
