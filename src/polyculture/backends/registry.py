"""Registries of the model backends: a backend registers its loader under a name (as lm-eval's
`@register_model` does), and the loaders in `polyculture.backends.load` dispatch by that name.

Adding a backend is one module that defines it and registers it, plus its import in
`polyculture.backends.load` (which imports every backend module, so that all are registered)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyculture.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered backend: its name, its loader, whether a config may name it, and facts
    about it."""

    name: str
    load: Callable[..., Any]
    selectable: bool = True
    #: what callers may ask about a backend before loading it (e.g. a translator's needs_model)
    info: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """Backends of one kind (generation, translation, embedding) by name, in registration order.

    `key` is the config key that names a backend of this kind (for error messages)."""

    def __init__(self, what: str, key: str) -> None:
        self.what = what
        self.key = key
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, selectable: bool = True, **info: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a loader under `name`; `selectable=False` keeps it out of the
        names a config may give (a backend chosen by the model spec, e.g. openai); `info` is
        kept as the entry's facts."""

        def decorate(load: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.what} backend {name!r} is registered twice")
            self._entries[name] = Entry(name, load, selectable, dict(info))
            return load

        return decorate

    def names(self, *, selectable_only: bool = False) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(n for n, e in self._entries.items() if e.selectable or not selectable_only)

    def entry(self, name: str) -> Entry:
        """The entry registered under `name`; fails naming the config key and the choices."""
        if name not in self._entries:
            raise ConfigError(
                self.key,
                f"unknown {self.what} backend {name!r}; expected one of "
                f"{', '.join(self.names(selectable_only=True))}",
            )
        return self._entries[name]

    def get(self, name: str) -> Callable[..., Any]:
        """The loader registered under `name`; fails naming the config key and the choices."""
        return self.entry(name).load


GENERATORS = Registry("generation", "backend.generation")
TRANSLATORS = Registry("translation", "translator.kind")
EMBEDDERS = Registry("embedding", "consensus.embedder")
