"""The benchmark interface. A benchmark is one folder under ``polyculture/evals/`` (a package
whose name is the benchmark's name with ``-`` written ``_``) holding:

- ``benchmark.yaml``: its settings (data source, groups, prompt templates, generation settings,
  the headline aggregation); a config's ``evaluate.benchmarks`` entry may override any of them;
- ``README.md``: what it measures, where each default comes from, deviations from the source;
- ``__init__.py``: ``BENCHMARK``, an object with the :class:`Benchmark` methods, and optionally
  ``inputs(settings)`` (the files its items are built from) and ``fetch(settings, dest)`` (the
  download of ``data.hub_dataset`` into ``dest``, which the workflow then passes as data.path).

Everything else (generation, aggregation, the paired comparison, summaries) is generic over the
per-item score table the benchmark returns (:mod:`polyculture.evals.tables`)."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl

from polyculture.errors import ConfigError, InputError
from polyculture.io import read_yaml

EVALS_DIR = Path(__file__).resolve().parent
CONFIG_FILE = "benchmark.yaml"

#: Columns every item table holds (the benchmark adds its own beside them): the item's id,
#: unique within the benchmark; its group (e.g. a country: the stratum of the bootstrap and the
#: unit of the macro mean); the prompt sent to the model (the one user turn in chat format).
ITEM_SCHEMA = {"item_id": pl.String, "group": pl.String, "prompt": pl.String}

#: Columns every per-item score table holds beside the benchmark's metric columns (Float64,
#: named in benchmark.yaml `metrics`; null for an item the benchmark does not score, e.g. a
#: question BLEnD's rules skip: it is in no mean, count or paired comparison): `dropped` marks an
#: answer that could not be used (unparseable); it scores as wrong and is counted as a drop.
SCORE_SCHEMA = {"item_id": pl.String, "group": pl.String, "dropped": pl.Boolean}


@runtime_checkable
class Benchmark(Protocol):
    """What a benchmark folder's module implements (its ``BENCHMARK`` object)."""

    def check(self, settings: Mapping[str, Any]) -> None:
        """Raise ConfigError (naming the key and the file) when the data lacks what the
        settings ask for (e.g. a configured group); called at config time."""

    def items(self, settings: Mapping[str, Any]) -> pl.DataFrame:
        """The benchmark's items with their prompts (columns :data:`ITEM_SCHEMA` and more)."""

    def score(
        self, items: pl.DataFrame, responses: pl.DataFrame, settings: Mapping[str, Any]
    ) -> pl.DataFrame:
        """One row per item: :data:`SCORE_SCHEMA` plus the metric columns. `responses` holds
        item_id and response (a missing item scores as a dropped, wrong answer)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark as a run uses it: its folder, its module and its settings (benchmark.yaml
    with the config's overrides applied)."""

    name: str
    folder: Path
    settings: dict[str, Any]

    @property
    def metrics(self) -> list[str]:
        return list(self.settings["metrics"])

    @property
    def headline(self) -> str:
        """The metric the summaries lead with (macro mean over the groups)."""
        return str(self.settings["headline"]["metric"])

    @property
    def group_key(self) -> str:
        """What a group is (e.g. country): the headline is the macro mean over them."""
        return str(self.settings["groups"]["key"])

    @property
    def groups(self) -> list[str]:
        return [str(g) for g in self.settings["groups"]["values"]]

    def implementation(self) -> Benchmark:
        """The folder's BENCHMARK object."""
        module = importlib.import_module(f"polyculture.evals.{self.folder.name}")
        impl = getattr(module, "BENCHMARK", None)
        if impl is None or not isinstance(impl, Benchmark):
            raise ConfigError(
                "evaluate.benchmarks",
                f"{self.name}: {self.folder / '__init__.py'} has no BENCHMARK object with "
                "check(), items() and score() (the scorer)",
            )
        return impl


def benchmark_names(root: Path = EVALS_DIR) -> list[str]:
    """Names of the benchmark folders under `root` (a package holding benchmark.yaml), sorted."""
    return sorted(
        p.parent.name.replace("_", "-")
        for p in root.glob(f"*/{CONFIG_FILE}")
        if (p.parent / "__init__.py").is_file()
    )


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` applied: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_REQUIRED = ("name", "data", "groups", "generation", "metrics", "headline")


def load_benchmark(
    name: str, overrides: Mapping[str, Any] | None = None, root: Path = EVALS_DIR
) -> BenchmarkSpec:
    """The benchmark `name` (its folder under `root`) with `overrides` applied."""
    folder = root / name.replace("-", "_")
    where = "evaluate.benchmarks"
    if not folder.is_dir():
        known = ", ".join(benchmark_names(root)) or "none"
        raise ConfigError(
            where, f"'{name}' is not a benchmark folder under {root} (known: {known})"
        )
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise ConfigError(where, f"{name}: {config} does not exist (a benchmark's settings)")
    if not (folder / "__init__.py").is_file():
        raise ConfigError(where, f"{name}: {folder / '__init__.py'} does not exist (its scorer)")
    settings = read_yaml(config)
    if not isinstance(settings, Mapping):
        raise ConfigError(where, f"{name}: {config} is not a mapping")
    missing = [k for k in _REQUIRED if k not in settings]
    if missing:
        raise ConfigError(where, f"{name}: {config} lacks {', '.join(missing)}")
    if settings["name"] != name:
        raise ConfigError(
            where, f"{config}: name is '{settings['name']}', its folder says '{name}'"
        )
    settings = deep_merge(settings, overrides or {})
    settings["name"] = name
    spec = BenchmarkSpec(name, folder, settings)
    if spec.headline not in spec.metrics:
        raise ConfigError(
            f"{where}[{name}].headline.metric",
            f"'{spec.headline}' is not one of its metrics ({', '.join(spec.metrics)}) in {config}",
        )
    if not spec.groups:
        raise ConfigError(f"{where}[{name}].groups.values", f"no groups (in {config})")
    return spec


def benchmark_entries(entries: Sequence[str | Mapping[str, Any]]) -> list[BenchmarkSpec]:
    """The benchmarks a config's ``evaluate.benchmarks`` list names: each a name, or a mapping
    {name, ...overrides of its benchmark.yaml}; each name once."""
    specs: list[BenchmarkSpec] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            name, overrides = entry, {}
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name, overrides = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        else:
            raise ConfigError(
                f"evaluate.benchmarks[{i}]",
                f"expected a name or {{name: ..., overrides}}, got {entry!r}",
            )
        if any(s.name == name for s in specs):
            raise ConfigError(f"evaluate.benchmarks[{i}]", f"'{name}' is listed twice")
        spec = load_benchmark(name, overrides)
        section = spec.settings.get("workflow_section")
        if section:
            raise ConfigError(
                f"evaluate.benchmarks[{i}]",
                f"'{name}' runs through the workflow's own rules, configured in {section} "
                f"({spec.folder / CONFIG_FILE}); set it there instead of listing it here",
            )
        specs.append(spec)
    return specs


def spec_from_settings(settings: Mapping[str, Any], root: Path = EVALS_DIR) -> BenchmarkSpec:
    """The benchmark whose resolved settings (:attr:`BenchmarkSpec.settings`, as a rule passes
    them) are `settings`."""
    name = str(settings["name"])
    return BenchmarkSpec(name, root / name.replace("-", "_"), dict(settings))


def benchmark_inputs(spec: BenchmarkSpec) -> list[str]:
    """The files a benchmark's items are built from (the rule's inputs): its implementation's
    `inputs(settings)` where it has one, else its data.path and data.mc_questions_file."""
    impl = spec.implementation()
    if hasattr(impl, "inputs"):
        return [str(p) for p in impl.inputs(spec.settings)]
    data = spec.settings["data"]
    return [str(data[k]) for k in ("path", "mc_questions_file") if data.get(k)]


def fetches_data(spec: BenchmarkSpec) -> bool:
    """Whether the workflow downloads the benchmark's data (rule benchmark_fetch): it names no
    local data (data.path, data.mc_questions_file) but a Hub dataset (data.hub_dataset), and
    its implementation has ``fetch(settings, dest)``."""
    data = spec.settings["data"]
    local = data.get("path") or data.get("mc_questions_file")
    return bool(not local and data.get("hub_dataset") and hasattr(spec.implementation(), "fetch"))


def with_fetched_data(spec: BenchmarkSpec, dest: str) -> BenchmarkSpec:
    """`spec` reading its data from `dest`, where benchmark_fetch downloads it."""
    settings = deep_merge(spec.settings, {"data": {"path": dest}})
    return BenchmarkSpec(spec.name, spec.folder, settings)


def check_benchmark(spec: BenchmarkSpec) -> None:
    """The config-time check of one benchmark: its implementation exists and its data holds
    what its settings ask for."""
    spec.implementation().check(spec.settings)


def benchmark_problems(config: Mapping[str, Any]) -> list[str]:
    """The config-time problems of a whole config's ``evaluate.benchmarks`` (none when the
    evaluate pipeline is off): each a message naming the key and the file."""
    if not config.get("pipelines", {}).get("evaluate", True):
        return []
    try:
        for spec in benchmark_entries(config.get("evaluate", {}).get("benchmarks", [])):
            if not fetches_data(spec):  # a download is checked once it is there
                check_benchmark(spec)
    except (ConfigError, InputError) as exc:
        return [str(exc)]
    return []
