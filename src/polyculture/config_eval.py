"""What a config's planned run reads, for the checks and the workflow: the stage groups that
are planned and the config sections they read; what an eval model's `adapter` names (a training
variant, a PEFT adapter directory, a hub adapter id) and whether its recorded base model is the
entry's `model`; the lm-eval tasks refused to an API model (log-likelihood tasks need weights)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from polyculture.backends.spec import (
    ModelSpec,
    is_api_spec,
    model_specs,
    parse_model_spec,
)
from polyculture.errors import ModelSpecError
from polyculture.lm_eval_tasks import api_refusal, read_task_folder

#: Top-level config sections that belong to stage groups: a section is read only where one of
#: its groups runs (`translator` by the translating groups, `eval_models` by the two that run
#: them). Other sections (backend, builtin_models, report, ...) serve every group.
SECTION_GROUPS: dict[str, tuple[str, ...]] = {
    "consensus": ("consensus",),
    "train": ("train",),
    "evaluate": ("evaluate",),
    "wvs": ("wvs",),
    "alignment": ("alignment",),
    "translator": ("consensus", "wvs"),
    "eval_models": ("evaluate", "wvs"),
}


def groups_in_use(config: Mapping[str, Any], workdir: Path | None = None) -> set[str]:
    """The stage groups whose rules a run plans: the switched-on ones (`pipelines`, on by
    default) and those their inputs come from: the alignment reads the WVS pipeline's responses
    or ground truth (source `workflow`) and the evaluate pipeline's lm-eval metrics (capability
    source `general_eval`); an eval model's training-variant adapter comes from the train
    group, whose data come from the consensus group."""
    pipelines = config.get("pipelines", {})
    used = {g for g in ("consensus", "train", "evaluate", "wvs", "alignment")
            if pipelines.get(g, True)}  # fmt: skip
    if "alignment" in used:
        al = config.get("alignment", {})
        if (al.get("responses", {}).get("source", "workflow") == "workflow"
                or al.get("ground_truth", {}).get("source", "workflow") == "workflow"):  # fmt: skip
            used.add("wvs")
        if al.get("capability", {}).get("source", "general_eval") == "general_eval":
            used.add("evaluate")
    if used & {"evaluate", "wvs"}:
        variants = config.get("train", {}).get("variants", [])
        if any(
            m.get("adapter") and adapter_kind(str(m["adapter"]), variants, workdir) == "variant"
            for m in config.get("eval_models", [])
        ):
            used.add("train")
    if "train" in used:
        used.add("consensus")
    return used


def section_in_use(dotted: str, used: set[str]) -> bool:
    """Whether the config key `dotted` lies in a section that one of the stage groups `used`
    reads (sections of no stage group always)."""
    section = re.split(r"[.\[]", dotted, maxsplit=1)[0]
    groups = SECTION_GROUPS.get(section)
    return groups is None or bool(used & set(groups))


def model_specs_in_use(
    config: Mapping[str, Any], workdir: Path | None = None
) -> list[tuple[str, ModelSpec]]:
    """(dotted key, ModelSpec) of the model keys that the planned stage groups read
    (:func:`groups_in_use`): an evaluation-only config's leftover translator, generator or
    judge builds, fetches and asks for nothing."""
    used = groups_in_use(config, workdir)
    return [(d, spec) for d, spec in model_specs(config) if section_in_use(d, used)]


#: The file that makes a directory a PEFT adapter (PeftModel.save_pretrained writes it).
ADAPTER_CONFIG = "adapter_config.json"


def adapter_kind(adapter: str, variants: Iterable[str], workdir: Path | None = None) -> str | None:
    """What an eval model's `adapter` names: 'variant' (a training variant of this workflow,
    results/train/<variant>/adapter), 'directory' (an existing local directory, relative ones
    against `workdir`), 'hub' (a Hugging Face adapter id, owner/name), or None (none of them).
    A variant's name wins over a directory of the same name."""
    if adapter in set(variants):
        return "variant"
    if adapter_path(adapter, workdir).is_dir():
        return "directory"
    try:
        return "hub" if parse_model_spec(adapter).kind == "hub" else None
    except ModelSpecError:
        return None


def adapter_path(adapter: str, workdir: Path | None = None) -> Path:
    """An adapter directory's path: `~` expanded, a relative one against `workdir`."""
    p = Path(adapter).expanduser()
    return p if p.is_absolute() or workdir is None else workdir / p


def adapter_base_model(adapter_dir: Path) -> str | None:
    """`base_model_name_or_path` of a PEFT adapter directory's adapter_config.json (None where
    unset); fails naming the file when it is missing or no JSON object."""
    import json

    from polyculture.errors import InputError

    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise InputError(path, "does not exist (expected a PEFT adapter directory, as "
                         "PeftModel.save_pretrained writes it)")  # fmt: skip
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    base = data.get("base_model_name_or_path")
    return str(base) if base else None


def adapter_base_agrees(model: str, base: str, builtin_dir: str | Path | None = None) -> bool:
    """Whether an adapter's recorded base model (`base_model_name_or_path`) is the eval model's
    `model`: the same spec; the same directory; a hub id whose local copy the base names
    (`.../owner/name` or the hub cache's `models--owner--name`); a built-in model's directory
    (`.../models/<name>`, under any results directory)."""
    if base == model:
        return True
    try:
        spec = parse_model_spec(model)
    except ModelSpecError:
        return False
    norm = base.rstrip("/")
    if spec.kind == "hub":
        return norm.endswith("/" + model) or f"models--{model.replace('/', '--')}" in norm
    if spec.kind == "builtin":
        return norm.endswith(f"models/{spec.name}") or (
            builtin_dir is not None and _same_dir(Path(builtin_dir) / str(spec.name), norm)
        )
    if spec.kind == "directory":
        return _same_dir(Path(model).expanduser(), norm)
    return False


def _same_dir(a: Path, b: str) -> bool:
    """Whether two paths name the same existing directory."""
    pb = Path(b).expanduser()
    try:
        return a.is_dir() and pb.is_dir() and a.resolve() == pb.resolve()
    except OSError:
        return False


def lm_eval_refused(
    config: Mapping[str, Any], workdir: Path | None = None
) -> dict[str, dict[str, str]]:
    """API eval model name → {lm-eval task: why it is refused}, where the evaluate pipeline is
    planned: the tasks of a local task folder (`evaluate.general.tasks_path`) whose output type
    is not `generate_until` (log-likelihood and multiple-choice tasks need the weights; a chat
    endpoint generates). Tasks from lm_eval's own collection are told apart in the job, where
    lm_eval's task index is (general_eval.runnable_tasks)."""
    if "evaluate" not in groups_in_use(config, workdir):
        return {}
    general = config.get("evaluate", {}).get("general", {})
    tasks = [str(t.get("task")) for t in general.get("tasks", [])]
    api = [m["name"] for m in config.get("eval_models", []) if is_api_spec(m.get("model"))]
    if not (tasks and api and general.get("tasks_path")):
        return {}
    folder = Path(str(general["tasks_path"])).expanduser()
    entries = read_task_folder(folder if folder.is_absolute() else (workdir or Path.cwd()) / folder)
    refused = {t: why for t in tasks if (why := api_refusal(t, entries)) is not None}
    return {name: refused for name in api} if refused else {}


def lm_eval_skipped(config: Mapping[str, Any], workdir: Path | None = None) -> dict[str, list[str]]:
    """Eval model name → its lm-eval tasks, for the API models that the config check can tell
    run none of them (every task refused: :func:`lm_eval_refused`); their lm_eval job is not
    planned."""
    tasks = [
        str(t.get("task")) for t in config.get("evaluate", {}).get("general", {}).get("tasks", [])
    ]
    return {
        name: tasks
        for name, refused in lm_eval_refused(config, workdir).items()
        if set(tasks) <= set(refused)
    }


def api_skip_warnings(config: Mapping[str, Any], workdir: Path | None = None) -> Iterator[str]:
    """One warning per API eval model naming the lm-eval tasks refused to it and why, and those
    whose output type its lm_eval job reads (lm_eval's own tasks)."""
    if "evaluate" not in groups_in_use(config, workdir):
        return
    general = config.get("evaluate", {}).get("general", {})
    tasks = [str(t.get("task")) for t in general.get("tasks", [])]
    refused = lm_eval_refused(config, workdir)
    for m in config.get("eval_models", []):
        if not (tasks and is_api_spec(m.get("model"))):
            continue
        name = m["name"]
        mine = refused.get(name, {})
        run = [t for t in tasks if t not in mine]
        parts = [f"eval model '{name}' is an API model"]
        if mine:
            reasons = sorted(set(mine.values()))
            parts.append(
                f"the lm-eval task(s) {', '.join(mine)} are refused for it ({'; '.join(reasons)})"
            )
        if run and general.get("tasks_path"):
            parts.append(
                f"its generative task(s) {', '.join(run)} run through lm-eval's "
                "local-chat-completions model (the chat template)"
            )
        elif run:
            parts.append(
                f"the output types of lm-eval task(s) {', '.join(run)} are read when its lm_eval "
                "job runs: generative tasks run through chat completions, log-likelihood ones "
                "are refused there, each named in the job's log and results.json"
            )
        yield "; ".join(parts) + "; BLEnD runs"
