"""What an lm-evaluation-harness task asks of a model, read from its task config without lm_eval:
its `output_type`. `generate_until` tasks score generated text, which an OpenAI-compatible chat
endpoint returns; `loglikelihood`, `loglikelihood_rolling` and `multiple_choice` tasks score the
log-probabilities of given continuations, which need the weights (chat endpoints return no
prompt log-probabilities), so an API model is refused those tasks one by one.

Task entries are read as lm_eval's task index reads them (lm_eval/tasks/_index.py): every
`*.yaml` under a folder, `include:`s merged (the including file's keys win), `!function` tags
kept unresolved; a YAML with `group:` is a group of the tasks its `task:` list names (or defines
inline), one with a string `task:` is a task, and its `tag:`s name tags of tasks. A task without
`output_type` is `generate_until`, lm_eval's TaskConfig default. The job reads the same entries
from lm_eval's own index (`entries_from_index`), which also knows lm_eval's bundled tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

#: lm_eval's TaskConfig default output type (lm_eval/config/task.py).
GENERATIVE = "generate_until"
#: Output types scored from log-probabilities (lm_eval/api/task.py: OutputType).
LOGLIKELIHOOD = frozenset({"loglikelihood", "loglikelihood_rolling", "multiple_choice"})
#: What an output type that cannot be told (a Python task class, an unknown name) reads as.
UNKNOWN = "unknown"

#: name → (kind, value): ('task', config), ('group', config) or ('tag', member task names).
Entries = Mapping[str, tuple[str, Any]]


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that keeps lm_eval's `!function module.name` tags as plain strings."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def load_task_yaml(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """One task YAML with its `include:`s merged in (relative to the file), as lm_eval's
    load_yaml merges them. Raises ValueError on a cycle or a YAML that is no mapping."""
    path = path.resolve()
    if path in _seen:
        raise ValueError(f"include cycle at {path}")
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (safe loader)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping")
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        merged.update(load_task_yaml(inc_path, _seen | {path}))
    merged.update(cfg)
    return merged


def read_task_folder(folder: str | Path) -> dict[str, tuple[str, Any]]:
    """The task, group and tag entries of every `*.yaml` under an lm_eval task folder (files
    that do not parse or are neither task nor group are skipped, as lm_eval's index skips
    them; the first of two entries of one name is kept)."""
    entries: dict[str, tuple[str, Any]] = {}
    tags: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*.yaml"), key=lambda p: p.as_posix()):
        try:
            cfg = load_task_yaml(path)
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if "group" in cfg:
            entries.setdefault(str(cfg["group"]), ("group", cfg))
        elif isinstance(cfg.get("task"), str):
            entries.setdefault(cfg["task"], ("task", cfg))
            raw = cfg.get("tag") or []
            for tag in raw if isinstance(raw, list) else [raw]:
                tags.setdefault(str(tag), []).append(cfg["task"])
    for tag, members in tags.items():
        entries.setdefault(tag, ("tag", members))
    return entries


def entries_from_index(index: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """The entries of lm_eval's task index (TaskManager.task_index: name → Entry with `kind`,
    `cfg`, `tags`)."""
    out: dict[str, tuple[str, Any]] = {}
    for name, entry in index.items():
        kind = getattr(entry.kind, "name", str(entry.kind)).lower()
        if kind == "tag":
            out[name] = ("tag", sorted(entry.tags))
        elif kind == "group":
            out[name] = ("group", entry.cfg or {})
        elif kind == "task":
            out[name] = ("task", entry.cfg or {})
        else:  # a Python task class: its output type is the class's
            out[name] = ("task", {**(entry.cfg or {}), "output_type": UNKNOWN})
    return out


def output_types(name: str, entries: Entries, _seen: frozenset[str] = frozenset()) -> set[str]:
    """The output types of a task, or of every task under a group or tag ({'unknown'} for a
    name the entries do not hold, a Python task class or a group cycle)."""
    if name not in entries or name in _seen:
        return {UNKNOWN}
    kind, value = entries[name]
    if kind == "task":
        if "class" in value and "output_type" not in value:
            return {UNKNOWN}
        return {str(value.get("output_type") or GENERATIVE)}
    members: Iterable[Any] = value if kind == "tag" else _listed(value.get("task"))
    types: set[str] = set()
    for member in members:
        if isinstance(member, Mapping):  # an inline task or group, or a named one overridden
            if "group" in member or isinstance(member.get("task"), list):
                types |= output_types(str(member.get("group")), entries, _seen | {name})
            elif "output_type" in member:
                types.add(str(member["output_type"]))
            else:
                types |= output_types(str(member.get("task")), entries, _seen | {name})
        else:
            types |= output_types(str(member), entries, _seen | {name})
    return types or {UNKNOWN}


def _listed(value: Any) -> list[Any]:
    """A `task:` field as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def api_refusal(name: str, entries: Entries) -> str | None:
    """Why an API model cannot run task `name` (its output types, if any is not
    `generate_until`), or None where every item of it is generated."""
    types = output_types(name, entries)
    if types == {GENERATIVE}:
        return None
    if UNKNOWN in types:
        return "its output type could not be read from its task config"
    return f"output_type {', '.join(sorted(types))}: scored by log-likelihoods, which need weights"
