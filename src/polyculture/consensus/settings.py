"""Defaults of the 'consensus' config section, filled from its JSON schema.

Snakemake's `validate(..., set_default=True)` does not fill defaults inside `$ref`'d section
schemas that declare their own `$schema` (jsonschema switches to the plain validator class of
that dialect), so this module walks the section schema itself: every missing key that has a
`default` gets a copy of it, recursively, following `$ref`s within the schema directory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from polyculture.io import read_yaml

Resolver = Callable[[Mapping[str, Any], Path], tuple[Mapping[str, Any], Path]]


def _resolver(schema_dir: Path) -> Resolver:
    cache: dict[Path, Any] = {}

    def load(path: Path) -> Any:
        if path not in cache:
            cache[path] = read_yaml(path)
        return cache[path]

    def resolve(node: Mapping[str, Any], base: Path) -> tuple[Mapping[str, Any], Path]:
        """`node` with its $ref followed (siblings of $ref win) and the file it lives in."""
        seen = 0
        while isinstance(node, Mapping) and "$ref" in node and seen < 32:
            seen += 1
            ref = node["$ref"]
            file_part, _, pointer = ref.partition("#")
            target_file = (base.parent / file_part).resolve() if file_part else base
            target: Any = load(target_file)
            for part in [p for p in pointer.split("/") if p]:
                target = target[part]
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings}
            base = target_file
        return node, base

    return resolve


def _fill(instance: Any, schema: Mapping[str, Any], base: Path, resolve: Resolver) -> None:
    schema, base = resolve(schema, base)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            sub_r, _ = resolve(sub, base)
            if key not in instance and "default" in sub_r:
                instance[key] = copy.deepcopy(sub_r["default"])
            if key in instance:
                _fill(instance[key], sub, base, resolve)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in instance:
                if key not in props:
                    _fill(instance[key], extra, base, resolve)
    elif isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        for item in instance:
            _fill(item, schema["items"], base, resolve)


def with_defaults(
    section: Mapping[str, Any], schema_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """A deep copy of a config section with every schema default filled in."""
    path = Path(schema_path).resolve()
    out = copy.deepcopy(dict(section))
    _fill(out, read_yaml(path), path, _resolver(path.parent))
    return out
