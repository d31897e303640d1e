"""Offline compute nodes: everything a config loads from the Hugging Face hub, fetched once on
the submit host into one cache, so that cluster jobs run with HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1.

`hub_items(config)` lists what a config names: every model key (`model`, `base_model`,
`embedder`, `generator`, `judge`, anywhere in the config: eval models and the bases of their
adapters, the translator, the judge, ...) whose spec is a hub id, the hub datasets of the
consensus sources and of its general data, and the lm-evaluation-harness tasks that come from the
hub (no `tasks_path`). `prefetch(items)` brings each into the cache that `HF_HOME` (or the
libraries' own default, ~/.cache/huggingface) names: models through
`huggingface_hub.snapshot_download`, datasets through `datasets.load_dataset` (whose cache is what
an offline `load_dataset` reads), lm-eval tasks by building them (which downloads their data).

Rules that fetch into results/ themselves (BLEnD, the released alignment responses, statement
URLs) run on the submit host as `localrules` and are not prefetch items.

`offline_hint(error)` turns a job's failed hub access under offline mode into a message that
names the missing item and the prefetch target; `polyculture.logs` adds it to a script's log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polyculture.config_check import _walk, is_model_key
from polyculture.logs import _truthy
from polyculture.backends.spec import classify_model_spec

#: The target that runs the prefetch on the submit host (rule `prefetch` in the Snakefile).
PREFETCH_TARGET = "prefetch"
#: Environment variables that put the Hugging Face libraries offline (set on cluster jobs by
#: profiles/slurm through sbatch --export).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class HubItem:
    """One thing to bring from the hub: kind 'model', 'dataset' or 'lm_eval_task'."""

    kind: str
    name: str
    key: str
    revision: str | None = None
    subset: str | None = None
    split: str | None = None


def hub_items(config: Mapping[str, Any]) -> list[HubItem]:
    """Everything `config` loads from the hub, each once, in config order; `key` names where."""
    items: dict[tuple, HubItem] = {}

    def add(item: HubItem) -> None:
        items.setdefault((item.kind, item.name, item.revision, item.subset, item.split), item)

    pipelines = config.get("pipelines", {})
    for dotted, key, value in _walk(config):
        section = re.split(r"[.\[]", dotted, maxsplit=1)[0]
        if pipelines.get(section, True) is False:
            continue  # a switched-off stage group loads nothing
        if is_model_key(key) and isinstance(value, str) and classify_model_spec(value) == "hub":
            add(HubItem("model", value, dotted))
    consensus = config.get("consensus", {})
    if pipelines.get("consensus", True):
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
    if pipelines.get("evaluate", True) and general_eval and not general_eval.get("tasks_path"):
        for i, task in enumerate(general_eval.get("tasks", [])):
            add(HubItem("lm_eval_task", task["task"], f"evaluate.general.tasks[{i}]"))
    return list(items.values())


def cache_dir() -> Path:
    """The Hugging Face cache root the libraries use here (HF_HOME, else their default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def fetch_item(item: HubItem) -> str:
    """Bring one item into the cache; returns where it lies (or what was built)."""
    if item.kind == "model":
        from huggingface_hub import snapshot_download

        return snapshot_download(item.name, revision=item.revision, repo_type="model")
    if item.kind == "dataset":
        import datasets

        ds = datasets.load_dataset(item.name, item.subset, split=item.split)
        return f"{len(ds)} rows"
    if item.kind == "lm_eval_task":
        from lm_eval.tasks import TaskManager, get_task_dict

        tasks = get_task_dict([item.name], TaskManager())
        return f"{len(tasks)} task(s)"
    raise ValueError(f"unknown hub item kind {item.kind!r}")


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


#: Error types (by name, anywhere in an exception's chain) that mean "wanted the network while
#: offline, and the cache lacks it", from huggingface_hub, transformers and datasets.
_OFFLINE_ERRORS = {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}
_OFFLINE_TEXT = re.compile(
    r"offline mode|HF_HUB_OFFLINE|couldn't connect to|cannot find the requested files in the "
    r"local cache|couldn't reach|not found in cache|outgoing traffic has been disabled",
    re.IGNORECASE,
)
_REPO_ID = re.compile(r"['\"]([A-Za-z0-9][\w.-]*/[\w.-]+)['\"]")


#: Argument names under which the hub clients (huggingface_hub, transformers, datasets,
#: sentence-transformers) hold the id they are loading.
_ID_ARGUMENTS = (
    "repo_id",
    "path_or_repo_id",
    "pretrained_model_name_or_path",
    "model_name_or_path",
    "path",
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _frame_repo_ids(chain: list[BaseException]) -> list[str]:
    """Hub ids the failing calls were loading, from the arguments in the tracebacks' frames
    (outermost first: the id the workflow asked for)."""
    ids = []
    for error in chain:
        tb = error.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            for name in _ID_ARGUMENTS:
                value = local.get(name)
                if (
                    isinstance(value, str)
                    and _HUB_ID.fullmatch(value)
                    and not Path(value).exists()
                    and value not in ids
                ):
                    ids.append(value)
            tb = tb.tb_next
    return ids


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def offline_hint(error: BaseException, environ: Mapping[str, str] | None = None) -> str | None:
    """A message naming the missing item and the prefetch target when `error` is a hub access
    that failed because this process runs offline; None for any other error."""
    env = os.environ if environ is None else environ
    if not any(_truthy(env.get(k)) for k in OFFLINE_ENV):
        return None
    chain = _chain(error)
    texts = [str(e) for e in chain]
    if not (
        any(type(e).__name__ in _OFFLINE_ERRORS for e in chain)
        or any(_OFFLINE_TEXT.search(t) for t in texts)
    ):
        return None
    ids = _frame_repo_ids(chain) + [
        m for t in texts for m in _REPO_ID.findall(t) if not m.startswith(("http", "/"))
    ]
    what = f"'{ids[0]}'" if ids else "a hub model or dataset"
    return (
        f"this job runs offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set) and needed {what}, "
        f"which is not in the Hugging Face cache {env.get('HF_HOME') or cache_dir()}. "
        f"Fetch it on the submit host with the prefetch target "
        f"(`snakemake --profile profiles/slurm --workflow-profile none {PREFETCH_TARGET}`, same "
        f"--configfile and HF_HOME as the run), then rerun."
    )


def item_slug(item: HubItem) -> str:
    """A file name for an item: its name with '/' as '--', plus subset and split if any."""
    parts = [item.name.replace("/", "--"), item.revision, item.subset, item.split]
    return "@".join(p for p in parts if p)
