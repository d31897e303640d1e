"""Offline compute nodes: everything a config loads from the Hugging Face hub, fetched once on
the submit host into one cache, so that cluster jobs run with HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1.

`hub_items(config)` lists what a config names: every model key (`model`, `base_model`,
`embedder`, `generator`, `judge`, in the sections that the planned stage groups read: eval
models and the bases of their adapters, the translator, the judge, ...) whose spec is a hub id, the eval models' adapters that
are hub adapter ids (checked once fetched: they hold adapter_config.json, and a recorded base
model other than the entry's `model` is logged as a warning), the hub datasets of the
consensus sources and of its general data, and the lm-evaluation-harness tasks that come from the
hub (no `tasks_path`). `prefetch(items)` brings each into the cache that `HF_HOME` (or the
libraries' own default, ~/.cache/huggingface) names: models through
`huggingface_hub.snapshot_download`, datasets through `datasets.load_dataset` (whose cache is what
an offline `load_dataset` reads), lm-eval tasks by building them (which downloads their data).

Rules that fetch into results/ themselves (BLEnD, the released alignment responses, statement
URLs) run on the submit host as `localrules` and are not prefetch items.

What a job that runs offline and misses an item says is `polyculture.logs.offline_hint`'s
(with the variables that put it offline, `polyculture.logs.OFFLINE_ENV`, and this target's name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polyculture.config_eval import (
    adapter_base_agrees,
    adapter_base_model,
    adapter_kind,
    groups_in_use,
    model_specs_in_use,
)
from polyculture.logs import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubItem:
    """One thing to bring from the hub: kind 'model', 'adapter' (a PEFT adapter; `base` is the
    model its eval model applies it to), 'dataset' or 'lm_eval_task'."""

    kind: str
    name: str
    key: str
    revision: str | None = None
    subset: str | None = None
    split: str | None = None
    base: str | None = None


def hub_items(config: Mapping[str, Any]) -> list[HubItem]:
    """Everything `config` loads from the hub, each once, in config order; `key` names where."""
    items: dict[tuple, HubItem] = {}

    def add(item: HubItem) -> None:
        items.setdefault((item.kind, item.name, item.revision, item.subset, item.split), item)

    used = groups_in_use(config, Path.cwd())
    for dotted, spec in model_specs_in_use(config, Path.cwd()):
        if spec.needs_prefetch:  # a stage group that is not planned loads nothing
            add(HubItem("model", spec.raw, dotted))
    variants = config.get("train", {}).get("variants", [])
    for i, m in enumerate(config.get("eval_models", []) if used & {"evaluate", "wvs"} else []):
        adapter = m.get("adapter")
        if adapter and adapter_kind(adapter, variants, Path.cwd()) == "hub":
            add(HubItem("adapter", adapter, f"eval_models[{i}].adapter", base=m.get("model")))
    consensus = config.get("consensus", {})
    if "consensus" in used:
        for i, src in enumerate(consensus.get("sources", [])):
            if src.get("hub"):
                add(
                    HubItem(
                        "dataset",
                        src["hub"],
                        f"consensus.sources[{i}].hub",
                        subset=src.get("subset"),
                        split=src.get("split", "train"),
                    )
                )
        general = consensus.get("general", {})
        if general.get("hub") and not general.get("path"):
            split = general.get("split", "train")
            add(HubItem("dataset", general["hub"], "consensus.general.hub", split=split))
    general_eval = config.get("evaluate", {}).get("general", {})
    if "evaluate" in used and general_eval and not general_eval.get("tasks_path"):
        for i, task in enumerate(general_eval.get("tasks", [])):
            add(HubItem("lm_eval_task", task["task"], f"evaluate.general.tasks[{i}]"))
    return list(items.values())


def fetch_item(item: HubItem) -> str:
    """Bring one item into the cache; returns where it lies (or what was built)."""
    if item.kind == "model":
        from huggingface_hub import snapshot_download

        return snapshot_download(item.name, revision=item.revision, repo_type="model")
    if item.kind == "adapter":
        from huggingface_hub import snapshot_download

        location = snapshot_download(item.name, revision=item.revision, repo_type="model")
        check_adapter(item, Path(location))
        return location
    if item.kind == "dataset":
        import datasets

        ds = datasets.load_dataset(item.name, item.subset, split=item.split)
        return f"{len(ds)} rows"
    if item.kind == "lm_eval_task":
        from lm_eval.tasks import TaskManager, get_task_dict

        tasks = get_task_dict([item.name], TaskManager())
        return f"{len(tasks)} task(s)"
    raise ValueError(f"unknown hub item kind {item.kind!r}")


def check_adapter(item: HubItem, location: Path) -> None:
    """A fetched hub adapter holds adapter_config.json (else InputError naming the file); a
    recorded base model other than the eval model's is logged as a warning naming both."""
    base = adapter_base_model(location)
    if base and item.base and not adapter_base_agrees(item.base, base):
        log.warning(
            "%s: adapter '%s' was trained on '%s' (base_model_name_or_path of its "
            "adapter_config.json), but the entry's model is '%s'; a LoRA adapter fits only the "
            "model it was trained on",
            item.key, item.name, base, item.base,
        )  # fmt: skip


class PrefetchError(RuntimeError):
    """Some items could not be fetched; the message names each with its config key."""


def prefetch(items: Iterable[HubItem], log=None) -> list[dict[str, Any]]:
    """Fetch every item; returns the manifest rows (item fields + `location`).

    Tries all items before failing, so that one run names every missing item."""
    rows, failed = [], []
    for item in items:
        try:
            location = fetch_item(item)
        except Exception as exc:  # the hub clients raise many kinds; all are reported
            failed.append(f"{item.kind} '{item.name}' ({item.key}): {type(exc).__name__}: {exc}")
            continue
        if log is not None:
            log.info("prefetched %s %s (%s) → %s", item.kind, item.name, item.key, location)
        rows.append({**asdict(item), "location": str(location)})
    if failed:
        raise PrefetchError(
            f"could not fetch {len(failed)} item(s) into the Hugging Face cache {cache_dir()}:\n  "
            + "\n  ".join(failed)
        )
    return rows


def item_slug(item: HubItem) -> str:
    """A file name for an item: its name with '/' as '--', plus subset and split if any."""
    parts = [item.name.replace("/", "--"), item.revision, item.subset, item.split]
    return "@".join(p for p in parts if p)
