"""Errors that name the file, key or row at fault and what was expected."""

from __future__ import annotations


class PolycultureError(Exception):
    """Base class of the errors this library raises on bad input."""


class ConfigError(PolycultureError):
    """A config key holds a value the workflow cannot use."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {problem}")


class InputError(PolycultureError):
    """An input file is missing, empty, malformed or lacks what the stage needs."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class ModelSpecError(PolycultureError):
    """A model spec is neither a Hugging Face id, an existing directory nor a built-in name."""


class DropRateError(PolycultureError):
    """More model output was unusable than the configured limit allows."""
