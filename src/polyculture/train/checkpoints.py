"""Checkpoints and run fingerprints: which checkpoint a rerun resumes from, and the atomic write
of the final adapter."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyculture.errors import InputError
from polyculture.io import atomic_dir, file_sha256, write_json
from polyculture.train.settings import TrainJob

log = logging.getLogger("polyculture.train")


CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


FINGERPRINT_FILE = "fingerprint.json"


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The step of a checkpoint directory (checkpoint-<step>)."""
    m = CHECKPOINT_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a checkpoint directory (checkpoint-<step>)")
    return int(m.group(1))


def checkpoint_steps(run_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """Checkpoint directories under `run_dir` by step."""
    root = Path(run_dir)
    if not root.is_dir():
        return {}
    found = {}
    for p in root.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir():
            found[int(m.group(1))] = p
    return found


def checkpoint_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a checkpoint was written to the end: its trainer_state.json, which the Trainer
    saves last (and not atomically), exists and parses with a global step. A kill while it was
    being written leaves it empty or cut off."""
    try:
        state = json.loads((Path(path) / "trainer_state.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "global_step" in state


def latest_complete_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The latest checkpoint that was written to the end (see :func:`checkpoint_complete`)."""
    found = checkpoint_steps(run_dir)
    for step in sorted(found, reverse=True):
        if checkpoint_complete(found[step]):
            return found[step]
    return None


def run_fingerprint(job: TrainJob, world_size: int) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed: settings, data, base model and
    number of processes."""
    return {
        "settings": job.settings.science(),
        "data_sha256": file_sha256(job.data),
        "base_model": job.base_model,
        "world_size": world_size,
    }


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """Short stable hash of a run fingerprint (names the run's tracking directory)."""
    text = json.dumps(fingerprint, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text[:12] + "…" if len(text) > 16 and re.fullmatch(r"[0-9a-f]+", text) else text


def fingerprint_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two run fingerprints, one 'key: old → new' per difference."""
    a, b = _flatten(old), _flatten(json.loads(json.dumps(new)))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "(absent)") != b.get(key, "(absent)"):
            diffs.append(
                f"{key}: {_short(a.get(key, '(absent)'))} → {_short(b.get(key, '(absent)'))}"
            )
    return diffs


@dataclass
class ResumePlan:
    """Where a run starts: the checkpoint it resumes from (None: from scratch), the
    checkpoints it refused and why, and the hash of its fingerprint."""

    checkpoint: Path | None
    refused: list[dict[str, Any]]
    fingerprint_hash: str

    @property
    def step(self) -> int:
        """The step of the checkpoint resumed from (0 from scratch)."""
        return checkpoint_step(self.checkpoint) if self.checkpoint else 0


def prepare_run_dir(job: TrainJob, fingerprint: Mapping[str, Any]) -> ResumePlan:
    """Make the run directory ready and say which checkpoint to resume from, if any.

    Checkpoints of a different run (other settings, data, base model or world size: the
    fingerprint file differs or is missing) and checkpoints cut short by a kill are refused,
    logged with the reason, and removed; they cannot be resumed.
    """
    run = Path(job.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    fp_path = run / FINGERPRINT_FILE
    refused: list[dict[str, Any]] = []
    reason = None
    if not fp_path.is_file():
        reason = f"the run directory has no {FINGERPRINT_FILE} (which run wrote it is unknown)"
    else:
        try:
            old = json.loads(fp_path.read_text("utf-8"))
        except json.JSONDecodeError:
            reason = f"{FINGERPRINT_FILE} is unreadable"
        else:
            diffs = fingerprint_differences(old, fingerprint)
            if diffs:
                reason = "fingerprint mismatch, made by a different run: " + "; ".join(diffs)
    found = checkpoint_steps(run)
    if reason is not None:
        for step in sorted(found):
            refused.append({"checkpoint": found[step].name, "step": step, "reason": reason})
            log.warning("refusing %s: %s; removing it", found[step], reason)
            shutil.rmtree(found[step])
        write_json(dict(fingerprint), fp_path)
        return ResumePlan(None, refused, fingerprint_hash(fingerprint))
    latest = latest_complete_checkpoint(run)
    for step in sorted(found):
        if latest is None or step > checkpoint_step(latest):
            why = (
                "cut short by a kill (its trainer_state.json, written last, is missing or "
                "incomplete)"
            )
            refused.append({"checkpoint": found[step].name, "step": step, "reason": why})
            log.warning("refusing %s: %s; removing it", found[step], why)
            shutil.rmtree(found[step])
    return ResumePlan(latest, refused, fingerprint_hash(fingerprint))


def load_finished_checkpoint(model: Any, checkpoint: str | os.PathLike[str]) -> tuple[list, int]:
    """Load a checkpoint's adapter weights into `model` (a fresh LoRA model of the same
    settings); return the checkpoint's log history and step."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = Path(checkpoint)
    state = json.loads((ckpt / "trainer_state.json").read_text("utf-8"))
    result = set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise InputError(
            ckpt,
            f"adapter weights do not fit the model (missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})",
        )
    return list(state["log_history"]), int(state["global_step"])


def save_adapter_atomically(
    model: Any, adapter_dir: str | os.PathLike[str], readme: str | None = None
) -> None:
    """Save the PEFT adapter to a temporary sibling directory, then rename it into place;
    `readme` replaces the stub README.md that PEFT writes."""
    with atomic_dir(adapter_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if readme is not None:
            (tmp / "README.md").write_text(readme, encoding="utf-8")
