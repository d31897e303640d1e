"""LoRA supervised fine-tuning on chat dialogues with the loss on assistant turns only.

The method (cross-lingual consensus, appendices A/B): LoRA r=16 on all linear layers, lr 1e-5,
cosine schedule with 10 % warmup, per-device batch 2, no gradient accumulation, 1,000 steps,
sequences up to 4,096 tokens, bf16; six-turn dialogues whose loss covers turns 2, 4 and 6.

Assistant-only loss. The mask comes from the chat template: where the template marks assistant
output with ``{% generation %}`` blocks, transformers' ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` gives it directly. Most released templates (Llama-3.1
among them) carry no such markers, and TRL's ``SFTTrainer(assistant_only_loss=True)`` rests on
the same transformers mask: TRL 1.16 patches a fixed list of templates and raises for the rest,
Llama-3.1's included. For those templates the mask is derived from the template itself by
rendering conversation prefixes (the "prefix diff"): the characters that the template adds
between "prefix up to turn i with a generation prompt" and "prefix through turn i" are turn
i's assistant output (content and end-of-turn token; trailing whitespace, a separator between
turns, is left out as generation-marker templates leave it out); the tokens of the full
rendering that overlap those characters are trained. A template that renders a turn
differently once later turns follow (not prefix-preserving, e.g. Qwen3's empty ``<think>``
block on the last assistant turn) is masked by locating each assistant turn's own text and the
end-of-turn tokens after it (``polyculture.chat.assistant_spans_by_content``); one that does not
render the assistant's text verbatim is refused rather than masked wrongly. On
the tiny model's template both ways give the same mask (tested).

Truncation keeps the first ``max_length`` tokens (``truncation_side: right``, TRL's default) or
the last ones (``left``: keeps the final answer; drops the beginning, BOS included). Examples
whose assistant tokens are all cut away are dropped and counted.

Runs are resumable: checkpoints go to a run directory beside the outputs, and a rerun resumes
from the latest complete checkpoint when it was made by the same settings and data (a
fingerprint file guards against resuming a different run); the Trainer restores weights,
optimizer, scheduler, RNG states and the position in the data order, so on the CPU a resumed
run ends with the same adapter bytes as an uninterrupted one (tested; on GPUs equal within
floating-point nondeterminism of the kernels). The final adapter is written to a temporary
directory and renamed into place, so a killed job never leaves half an adapter.

Multi-GPU training is one process group started by ``accelerate launch`` (see
:func:`launch_command`); each process runs :func:`run_job` from a JSON job file
(``python -m polyculture.train --job job.json``), and only the main process writes outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, InputError
from polyculture.io import read_jsonl, write_json, write_parquet

log = logging.getLogger("polyculture.train")

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FINGERPRINT_FILE = "fingerprint.json"
DROP_STAGE = "train_tokenize"
LOSS_COLUMNS = ("step", "loss", "learning_rate", "epoch", "grad_norm", "heldout_loss")
TRACKING_DIRS = ("tensorboard", "wandb", "mlruns")
NO_REGION = "(none)"
GENERAL_REGION = "(general)"
#: Trackers that transformers' Trainer reports to (the keys of
#: transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK, tested), and 'none'.
REPORT_TO_CHOICES = (
    "none",
    "azure_ml",
    "clearml",
    "codecarbon",
    "comet_ml",
    "dagshub",
    "dvclive",
    "flyte",
    "kubeflow",
    "mlflow",
    "neptune",
    "swanlab",
    "tensorboard",
    "trackio",
    "wandb",
)
#: Python module that each tracker needs (checked before a job starts; transformers checks the
#: others itself when the Trainer is made).
TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "trackio": ("trackio",),
    "comet_ml": ("comet_ml",),
    "neptune": ("neptune",),
    "clearml": ("clearml",),
    "dvclive": ("dvclive",),
    "swanlab": ("swanlab",),
    "codecarbon": ("codecarbon",),
}
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

MaskMethod = Literal["auto", "template", "prefix"]


@dataclass(frozen=True)
class TrainSettings:
    """Every setting that shapes the trained adapter (the paper's values are the defaults)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # CulFiT's code: LLaMA-Factory's default (the schema's)
    target_modules: str | tuple[str, ...] = "all-linear"
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    max_length: int = 4096
    truncation_side: Literal["right", "left"] = "right"
    mask_method: MaskMethod = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    seed: int = 0
    max_drop_rate: float = 0.05
    heldout_share: float = 0.0  # not in the paper, which trains on every example
    # bookkeeping only: these do not change the result and are left out of the fingerprint
    # (evaluation on the held-out split leaves the random state of training as it was)
    save_steps: int = 100
    save_total_limit: int | None = 2
    logging_steps: int = 10
    eval_steps: int = 100
    report_to: tuple[str, ...] = ("tensorboard",)

    NON_SCIENCE: ClassVar[tuple[str, ...]] = (
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "eval_steps",
        "report_to",
    )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainSettings:
        """Settings from a mapping (config section or job file); unknown keys are errors."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError("train", f"unknown training setting(s): {', '.join(unknown)}")
        data = dict(values)
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = tuple(data["target_modules"])
        if "report_to" in data:
            data["report_to"] = report_to_tuple(data["report_to"])
        settings = cls(**data)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that cannot train (the config schema checks the same in the workflow)."""
        positive = ("lora_r", "per_device_batch_size", "gradient_accumulation_steps", "max_steps")
        for name in (*positive, "max_length", "save_steps", "logging_steps", "eval_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("train.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError("train.lora.dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0:
            raise ConfigError("train.learning_rate", f"must be positive, got {self.learning_rate}")
        if self.truncation_side not in ("right", "left"):
            raise ConfigError("train.truncation_side", "expected 'right' or 'left'")
        if self.mask_method not in ("auto", "template", "prefix"):
            raise ConfigError("train.mask_method", "expected 'auto', 'template' or 'prefix'")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError("train.precision", "expected 'auto', 'bf16' or 'fp32'")
        if not 0 <= self.heldout_share < 1:
            raise ConfigError("train.heldout.share", f"must be in [0, 1), got {self.heldout_share}")
        unknown = [t for t in self.report_to if t not in REPORT_TO_CHOICES or t == "none"]
        if unknown:
            raise ConfigError(
                "train.report_to",
                f"unknown tracker(s) {', '.join(map(repr, unknown))}; expected 'none' or any of "
                f"{', '.join(REPORT_TO_CHOICES[1:])}",
            )

    def to_mapping(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (inverse of :meth:`from_mapping`)."""
        d = asdict(self)
        if isinstance(d["target_modules"], tuple):
            d["target_modules"] = list(d["target_modules"])
        d["report_to"] = list(d["report_to"])
        return d

    def science(self) -> dict[str, Any]:
        """The settings that change the result (what the resume fingerprint covers)."""
        d = self.to_mapping()
        for name in self.NON_SCIENCE:
            d.pop(name, None)
        return d


@dataclass(frozen=True)
class TrainJob:
    """One training run: inputs, outputs and settings; serialised to JSON for the launcher."""

    data: str
    base_model: str
    run_dir: str
    adapter_dir: str
    loss_path: str
    drops_path: str
    summary_path: str
    group: str = "all"
    settings: TrainSettings = field(default_factory=TrainSettings)
    cpu_threads: int | None = None
    run_name: str | None = None  # the run's name in the trackers (default: the group)
    base_model_spec: str | None = None  # the config's name of the base model (for the card)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the settings as a nested mapping)."""
        d = asdict(self)
        d["settings"] = self.settings.to_mapping()
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainJob:
        """Inverse of :meth:`to_json`."""
        d = dict(data)
        d["settings"] = TrainSettings.from_mapping(d.get("settings", {}))
        return cls(**d)


@dataclass
class TokenizedExample:
    """Model input of one conversation: token ids and labels (-100 outside assistant tokens)."""

    input_ids: list[int]
    labels: list[int]

    def as_features(self) -> dict[str, list[int]]:
        """The feature dict that the data collator pads."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": [1] * len(self.input_ids),
            "labels": self.labels,
        }


def report_to_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The trackers of a `train.report_to` value ('none', one name or a list) as a tuple
    (empty for 'none')."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else list(value)
    if "none" in names:
        if len(names) > 1:
            raise ConfigError("train.report_to", "'none' cannot be combined with trackers")
        return ()
    return tuple(names)


def check_trackers(report_to: Sequence[str]) -> None:
    """Fail naming `train.report_to` when a tracker's Python package is not installed."""
    import importlib.util

    for name in report_to:
        modules = TRACKER_MODULES.get(name)
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(
                "train.report_to",
                f"'{name}' needs the Python package {' or '.join(modules)}, which is not "
                f"installed (pip install {modules[0]}), or choose another tracker or 'none'",
            )


def settings_from_config(section: Mapping[str, Any], seed: int) -> TrainSettings:
    """Training settings from the validated `train:` config section and the run's base seed
    (the stage's seed is `seed + train.seed_offset`)."""
    lora = section.get("lora", {})
    heldout = section.get("heldout", {})
    values = {
        "lora_r": lora.get("r", 16),
        "lora_alpha": lora.get("alpha", 32),
        "lora_dropout": lora.get("dropout", 0.0),
        "target_modules": lora.get("target_modules", "all-linear"),
        "seed": seed + section.get("seed_offset", 0),
        "heldout_share": heldout.get("share", 0.0),
        "eval_steps": heldout.get("eval_steps", 100),
        "report_to": report_to_tuple(section.get("report_to", "tensorboard")),
    }
    keys = (
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "max_steps",
        "max_length",
        "truncation_side",
        "mask_method",
        "precision",
        "weight_decay",
        "max_grad_norm",
        "gradient_checkpointing",
        "max_drop_rate",
        "save_steps",
        "save_total_limit",
        "logging_steps",
    )
    values.update({k: section[k] for k in keys if k in section})
    return TrainSettings.from_mapping(values)


def check_adapter_bases(eval_models: Sequence[Mapping[str, Any]], base_model: str) -> None:
    """Every eval model that applies a trained adapter names the base the adapters are trained
    on (a LoRA adapter only fits the model it was trained on)."""
    for i, m in enumerate(eval_models):
        if m.get("adapter") and m.get("model") != base_model:
            raise ConfigError(
                f"eval_models[{i}].model",
                f"'{m.get('model')}' applies adapter '{m['adapter']}', which is trained on "
                f"train.base_model '{base_model}'; use that model",
            )


def threads_per_process(threads: int, num_processes: int) -> int:
    """CPU threads of each training process when a job's threads are shared by its processes."""
    return max(1, int(threads) // max(1, int(num_processes)))


# --------------------------------------------------------------------------------------------
# input records


def validate_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Check one conversation: a list of {role, content} with roles system/user/assistant and
    at least one assistant turn; returns it with only role and content kept."""
    if not isinstance(messages, list) or not messages:
        raise InputError(where, "'messages' must be a non-empty list of {role, content} objects")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(where, f"messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise InputError(
                where, f"messages[{i}].role is {m['role']!r}, expected one of {', '.join(ROLES)}"
            )
        if not isinstance(m["content"], str):
            raise InputError(where, f"messages[{i}].content must be a string")
        clean.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in clean):
        raise InputError(where, "the conversation has no assistant turn (nothing to train on)")
    return clean


@dataclass(frozen=True)
class TrainRecord:
    """One training example: the conversation and the stratum it belongs to."""

    messages: list[dict[str, str]]
    region: str
    language: str
    source: str

    @property
    def stratum(self) -> tuple[str, str, str]:
        """(source, region, language): the held-out split keeps these shares."""
        return (self.source, self.region, self.language)


def read_training_records(path: str | os.PathLike[str]) -> list[TrainRecord]:
    """Read the training JSONL (one {"messages": [...]} object per line, with the optional
    `region`, `language` and `source` of the consensus data); errors name the line. A record
    without a region is '(general)' when its source is 'general', else '(none)'."""
    records = read_jsonl(path)
    if not records:
        raise InputError(path, "no training examples (the file has no JSON lines)")
    out = []
    for lineno, record in enumerate(records, start=1):
        if "messages" not in record:
            raise InputError(path, f"record {lineno} has no 'messages' key")
        messages = validate_messages(record["messages"], f"{path}: record {lineno}")
        source = str(record.get("source") or NO_REGION)
        region = record.get("region")
        if region is None:
            region = GENERAL_REGION if source == "general" else NO_REGION
        out.append(
            TrainRecord(
                messages=messages,
                region=str(region),
                language=str(record.get("language") or NO_REGION),
                source=source,
            )
        )
    return out


def read_conversations(path: str | os.PathLike[str]) -> list[list[dict[str, str]]]:
    """The conversations of the training JSONL (see :func:`read_training_records`)."""
    return [r.messages for r in read_training_records(path)]


def heldout_split(strata: Sequence[Any], share: float, seed: int) -> list[bool]:
    """Which examples are held out: `round(share * n)` of them, allocated to the strata in
    proportion to their sizes (largest remainders first, ties in a seeded random order) and
    drawn at random within each stratum. Every stratum keeps at least one training example,
    so a stratum of one is never held out (the held-out set may then be a little smaller).
    `share` 0 holds out nothing; the same strata, share and seed give the same split."""
    import numpy as np

    n = len(strata)
    held = [False] * n
    if share <= 0 or n < 2:
        return held
    rng = np.random.default_rng(seed)
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(strata):
        groups.setdefault(key, []).append(i)
    keys = sorted(groups, key=repr)
    target = min(max(1, math.floor(share * n + 0.5)), n - 1)
    quota = {k: share * len(groups[k]) for k in keys}
    cap = {k: len(groups[k]) - 1 for k in keys}
    take = {k: min(math.floor(quota[k]), cap[k]) for k in keys}
    tiebreak = {k: int(r) for k, r in zip(keys, rng.permutation(len(keys)), strict=True)}
    left = target - sum(take.values())
    while left > 0:
        open_keys = [k for k in keys if take[k] < cap[k]]
        if not open_keys:
            break
        k = max(open_keys, key=lambda k: (quota[k] - take[k], -tiebreak[k]))
        take[k] += 1
        left -= 1
    for k in keys:
        if take[k]:
            for i in rng.permutation(groups[k])[: take[k]]:
                held[int(i)] = True
    return held


def split_counts(
    records: Sequence[TrainRecord], held: Sequence[bool], kept: Sequence[bool]
) -> list[dict[str, Any]]:
    """Examples per source, region and language: in the file, used for training, used as
    held-out, and dropped (left without assistant tokens by truncation)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r, h, k in zip(records, held, kept, strict=True):
        row = rows.setdefault(
            r.stratum,
            {
                "source": r.source,
                "region": r.region,
                "language": r.language,
                "examples": 0,
                "train": 0,
                "heldout": 0,
                "dropped": 0,
            },
        )
        row["examples"] += 1
        if not k:
            row["dropped"] += 1
        elif h:
            row["heldout"] += 1
        else:
            row["train"] += 1
    return [rows[key] for key in sorted(rows)]


# --------------------------------------------------------------------------------------------
# assistant-token masks


def has_generation_markers(chat_template: str | None) -> bool:
    """Whether a chat template marks assistant output with {% generation %} blocks."""
    return bool(chat_template) and _GENERATION_TAG.search(chat_template) is not None


def _template_of(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template


def resolve_mask_method(
    tokenizer: Any, method: MaskMethod = "auto"
) -> Literal["template", "prefix"]:
    """'template' when the chat template has generation markers (or when asked), else 'prefix'."""
    template = _template_of(tokenizer)
    if not template:
        raise ConfigError(
            "train.base_model", "the tokenizer has no chat template; an instruct model is needed"
        )
    if method == "template":
        if not has_generation_markers(template):
            raise ConfigError(
                "train.mask_method",
                "'template' needs {% generation %} markers in the chat template; use 'auto' or "
                "'prefix'",
            )
        return "template"
    if method == "prefix":
        return "prefix"
    return "template" if has_generation_markers(template) else "prefix"


def assistant_mask_from_template(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids and 0/1 assistant mask from transformers' generation-marker mask."""
    out = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(out["input_ids"])
    mask = [int(x) for x in out["assistant_masks"]]
    return ids, mask


def assistant_char_spans(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn, found by
    rendering prefixes (whitespace that the template puts after a turn is left out); fails when
    the template is not prefix-preserving."""
    msgs = list(messages)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        if not (
            full.startswith(before) and full.startswith(through) and len(through) > len(before)
        ):
            # not prefix-preserving (e.g. Qwen3's empty <think> block on the last assistant
            # turn only): locate each turn by its own text and the end-of-turn tokens after it
            from polyculture.backends.chat import assistant_spans_by_content, end_of_turn

            return full, assistant_spans_by_content(full, msgs, end_of_turn(tokenizer)[1])
        end = len(through)
        while end > len(before) and through[end - 1].isspace():
            end -= 1  # separator after the end-of-turn token, outside the assistant's output
        spans.append((len(before), end))
    return full, spans


def assistant_mask_by_prefix(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids and 0/1 assistant mask from prefix renderings: a token is an assistant token
    when its characters overlap an assistant turn's span (as transformers' own mask does)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("train.base_model", "the prefix mask needs a fast tokenizer (offsets)")
    full, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [0] * len(ids)
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and any(s < hi and e > lo for lo, hi in spans):
            mask[t] = 1
    return ids, mask


def assistant_mask(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], method: Literal["template", "prefix"]
) -> tuple[list[int], list[int]]:
    """Token ids and assistant mask of one conversation by the resolved method."""
    if method == "template":
        return assistant_mask_from_template(tokenizer, messages)
    return assistant_mask_by_prefix(tokenizer, messages)


def truncate(
    ids: list[int], mask: list[int], max_length: int, side: Literal["right", "left"]
) -> tuple[list[int], list[int]]:
    """Cut to `max_length` tokens: 'right' keeps the start, 'left' keeps the end."""
    if len(ids) <= max_length:
        return ids, mask
    if side == "right":
        return ids[:max_length], mask[:max_length]
    return ids[-max_length:], mask[-max_length:]


def tokenize_conversation(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    max_length: int,
    truncation_side: Literal["right", "left"] = "right",
    method: Literal["template", "prefix"] = "template",
) -> TokenizedExample | None:
    """Ids and labels of one conversation, truncated; None when no assistant token is left."""
    ids, mask = assistant_mask(tokenizer, messages, method)
    ids, mask = truncate(ids, mask, max_length, truncation_side)
    if not any(mask):
        return None
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    return TokenizedExample(input_ids=ids, labels=labels)


def tokenize_examples(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    settings: TrainSettings,
    drops: DropCounter,
) -> list[dict[str, list[int]] | None]:
    """Features of every conversation, None where truncation left no assistant token (counted
    in `drops`). A tokenizer without a chat template gets the plain format (polyculture.chat);
    system turns are merged into the first user turn where the template rejects them."""
    from polyculture.backends.chat import analyze_template, prepare_conversation

    fmt = analyze_template(tokenizer)
    method = resolve_mask_method(tokenizer, settings.mask_method)
    out: list[dict[str, list[int]] | None] = []
    for conv in conversations:
        drops.seen()
        ex = tokenize_conversation(
            tokenizer,
            prepare_conversation(conv, fmt),
            max_length=settings.max_length,
            truncation_side=settings.truncation_side,
            method=method,
        )
        if ex is None:
            drops.drop("no_assistant_tokens_after_truncation")
            out.append(None)
        else:
            out.append(ex.as_features())
    return out


def build_examples(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    settings: TrainSettings,
    drops: DropCounter,
) -> list[dict[str, list[int]]]:
    """Tokenize every conversation; count those without assistant tokens after truncation."""
    return [e for e in tokenize_examples(tokenizer, conversations, settings, drops) if e]


# --------------------------------------------------------------------------------------------
# model, trainer, checkpoints


def lora_config(settings: TrainSettings) -> Any:
    """The peft LoRA configuration of a causal LM."""
    from peft import LoraConfig

    target = settings.target_modules
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=target if isinstance(target, str) else list(target),
        bias="none",
        task_type="CAUSAL_LM",
    )


def use_bf16(settings: TrainSettings, cuda: bool) -> bool:
    """bf16 on CUDA ('auto'), fp32 on CPU; 'bf16' / 'fp32' force one."""
    if settings.precision == "auto":
        return cuda
    return settings.precision == "bf16"


def load_tokenizer(base_model: str) -> Any:
    """The base model's tokenizer, set up for training (right padding; pad = eos if unset)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model)
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_lora_model(base_model: str, settings: TrainSettings, bf16: bool) -> Any:
    """The base causal LM wrapped with fresh LoRA adapters (seeded initialisation)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(settings.seed)
    model = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    peft_model = get_peft_model(model, lora_config(settings))
    # peft resolves 'all-linear' to a set of module names; a sorted list keeps
    # adapter_config.json byte-identical across processes (set order follows the hash seed)
    config = peft_model.peft_config["default"]
    if isinstance(config.target_modules, set | list | tuple):
        config.target_modules = sorted(config.target_modules)
    return peft_model


def lora_target_names(model: Any) -> set[str]:
    """Short names of the modules that carry LoRA weights (e.g. {'q_proj', 'down_proj'})."""
    names = set()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0:
            names.add(name.rsplit(".", 1)[-1])
    return names


def training_arguments(
    settings: TrainSettings,
    output_dir: str,
    bf16: bool,
    cuda: bool,
    *,
    evaluate: bool = False,
    run_name: str | None = None,
) -> Any:
    """transformers TrainingArguments for the settings (checkpoints every `save_steps`; with
    `evaluate` the held-out loss every `eval_steps`; logs to the `report_to` trackers)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        run_name=run_name,
        project="polyculture",  # trackio's project (wandb's and mlflow's are set by environment)
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.eval_steps if evaluate else None,
        prediction_loss_only=True,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of max_steps
        max_steps=settings.max_steps,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        bf16=bf16,
        use_cpu=not cuda,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to=list(settings.report_to) or "none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
    )


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def loss_table(log_history: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Loss rows of a Trainer log history, one per step with a training-loss row or a held-out
    evaluation: step, loss (training, mean since the previous row), learning_rate, epoch,
    grad_norm, heldout_loss (null at steps without one)."""
    train: dict[int, dict[str, Any]] = {}
    heldout: dict[int, float] = {}
    epochs: dict[int, float] = {}
    for e in log_history:
        if "step" not in e:
            continue
        step = int(e["step"])
        if "loss" in e:
            train[step] = {
                "loss": float(e["loss"]),
                "learning_rate": float(e.get("learning_rate", math.nan)),
                "grad_norm": float(e.get("grad_norm", math.nan)),
            }
            epochs[step] = float(e.get("epoch", math.nan))
        if "eval_loss" in e:
            heldout[step] = float(e["eval_loss"])
            epochs.setdefault(step, float(e.get("epoch", math.nan)))
    rows = [
        {
            "step": step,
            "loss": train.get(step, {}).get("loss"),
            "learning_rate": train.get(step, {}).get("learning_rate"),
            "epoch": epochs[step],
            "grad_norm": train.get(step, {}).get("grad_norm"),
            "heldout_loss": heldout.get(step),
        }
        for step in sorted(set(train) | set(heldout))
    ]
    schema = {
        "step": pl.Int64,
        "loss": pl.Float64,
        "learning_rate": pl.Float64,
        "epoch": pl.Float64,
        "grad_norm": pl.Float64,
        "heldout_loss": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def save_adapter_atomically(
    model: Any, adapter_dir: str | os.PathLike[str], readme: str | None = None
) -> None:
    """Save the PEFT adapter to a temporary sibling directory, then rename it into place;
    `readme` replaces the stub README.md that PEFT writes."""
    target = Path(adapter_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if readme is not None:
            (tmp / "README.md").write_text(readme, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (1 process when not launched)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def tracking_environment(
    report_to: Sequence[str], run_dir: str | os.PathLike[str], fp_hash: str
) -> dict[str, str]:
    """Environment that keeps the trackers' local files under the run directory: TensorBoard
    event files in run/tensorboard/<fingerprint hash> (one TensorBoard run per distinct
    training run; a resumed run continues its own), wandb's files in run/wandb, an MLflow
    file store in run/mlruns (trackio logs locally unless TrainingArguments name a Space).
    Variables the user has set are kept; credentials (WANDB_API_KEY,
    MLFLOW_TRACKING_TOKEN, HF_TOKEN for trackio spaces, ...) are read by the trackers from the
    environment and never from the config."""
    run = Path(run_dir)
    env: dict[str, str] = {}
    if "tensorboard" in report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(run / "tensorboard" / fp_hash)
    if "wandb" in report_to:
        env["WANDB_DIR"] = str(run)
        env["WANDB_PROJECT"] = "polyculture"
    if "mlflow" in report_to:
        env["MLFLOW_TRACKING_URI"] = (run.resolve() / "mlruns").as_uri()
        env["MLFLOW_EXPERIMENT_NAME"] = "polyculture"
    return {k: os.environ.get(k, v) for k, v in env.items()}


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore the previous environment."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rng_neutral_trainer(base: type) -> type:
    """A Trainer class whose evaluation leaves torch's random state as it found it (the
    evaluation data loader draws a seed from it), so that evaluating on the held-out split,
    and how often, does not change the trained adapter."""

    class RngNeutralTrainer(base):  # type: ignore[misc, valid-type]
        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            import torch

            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices):
                return super().evaluate(*args, **kwargs)

    return RngNeutralTrainer


def _final_eval_callback() -> Any:
    """Callback that evaluates the held-out split at the last step too (not only every
    `eval_steps`), before the last checkpoint is saved."""
    from transformers import TrainerCallback

    class FinalEval(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_evaluate = True
            return control

    return FinalEval()


def _resume_tensorboard(trainer: Any, logdir: str, start_step: int) -> None:
    """Give the Trainer's TensorBoard callback (main process) a writer that purges events
    logged after `start_step` by an earlier, interrupted attempt of the same run."""
    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.tb_writer is None:
            Path(logdir).mkdir(parents=True, exist_ok=True)
            cb.tb_writer = cb._SummaryWriter(log_dir=logdir, purge_step=start_step + 1)
            cb.logging_dir = logdir


def read_tensorboard_scalars(logdir: str | os.PathLike[str]) -> pl.DataFrame:
    """The scalars of a TensorBoard run directory (every event file in it, with events that a
    resumed run superseded purged, as TensorBoard shows them): columns tag, step, value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(logdir).is_dir():
        raise InputError(logdir, "no TensorBoard run directory")
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    rows = [
        {"tag": tag, "step": int(e.step), "value": float(e.value)}
        for tag in sorted(acc.Tags()["scalars"])
        for e in acc.Scalars(tag)
    ]
    return pl.DataFrame(rows, schema={"tag": pl.String, "step": pl.Int64, "value": pl.Float64})


def run_job(job: TrainJob, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one LoRA adapter (resuming from the latest matching checkpoint) and write the
    adapter, the loss table, the drop table and a summary; returns the summary.

    A share of the examples (`heldout_share`, stratified by source, region and language) is
    held out and its loss evaluated every `eval_steps` and at the last step. The summary
    records where training started (`resume`: the checkpoint, the steps taken from it, the
    steps trained now, and each refused checkpoint with the reason). In a process group every
    rank trains; only rank 0 prepares the run directory and writes outputs. `callbacks` are
    extra transformers TrainerCallbacks.
    """
    import torch

    settings = job.settings
    _, world = _world()
    if job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    cuda = torch.cuda.is_available()
    bf16 = use_bf16(settings, cuda)
    check_trackers(settings.report_to)

    tokenizer = load_tokenizer(job.base_model)
    records = read_training_records(job.data)
    held = heldout_split([r.stratum for r in records], settings.heldout_share, settings.seed)
    drops = DropCounter(stage=DROP_STAGE, group=job.group)
    features = tokenize_examples(tokenizer, [r.messages for r in records], settings, drops)
    drops.check(settings.max_drop_rate)
    examples = [f for f, h in zip(features, held, strict=True) if f is not None and not h]
    heldout = [f for f, h in zip(features, held, strict=True) if f is not None and h]
    if not examples:
        raise InputError(job.data, "no training example has assistant tokens within max_length")
    counts = split_counts(records, held, [f is not None for f in features])

    fingerprint = run_fingerprint(job, world)
    tracking_env = tracking_environment(
        settings.report_to, job.run_dir, fingerprint_hash(fingerprint)
    )
    with _environment(tracking_env):
        return _train(
            job,
            settings,
            world,
            cuda,
            bf16,
            tokenizer,
            drops,
            examples,
            heldout,
            counts,
            fingerprint,
            tracking_env,
            callbacks,
        )


def _train(
    job: TrainJob,
    settings: TrainSettings,
    world: int,
    cuda: bool,
    bf16: bool,
    tokenizer: Any,
    drops: DropCounter,
    examples: list[dict[str, list[int]]],
    heldout: list[dict[str, list[int]]],
    counts: list[dict[str, Any]],
    fingerprint: Mapping[str, Any],
    tracking_env: Mapping[str, str],
    callbacks: Sequence[Any],
) -> dict[str, Any]:
    """The part of :func:`run_job` that runs with the trackers' environment set."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    # creating the arguments sets up the process group when launched by accelerate
    args = training_arguments(
        settings,
        job.run_dir,
        bf16,
        cuda,
        evaluate=bool(heldout),
        run_name=job.run_name or job.group,
    )
    with args.main_process_first(desc="checkpoint lookup"):
        plan = prepare_run_dir(job, fingerprint)
    resume = plan.checkpoint
    start_step = plan.step

    model = load_lora_model(job.base_model, settings, bf16)
    log.info(
        "training %s: %d examples (%d held out, %d dropped), %d steps, %d process(es), %s, %s",
        job.group,
        len(examples),
        len(heldout),
        drops.dropped,
        settings.max_steps,
        world,
        "bf16" if bf16 else "fp32",
        f"resuming from {resume}" if resume else "from scratch",
    )
    if resume is not None:
        log.info(
            "resuming from %s (step %d of %d): its run's fingerprint %s matches this run's "
            "(settings, data, base model, %d process(es))",
            resume,
            start_step,
            settings.max_steps,
            plan.fingerprint_hash,
            world,
        )
    elif plan.refused:
        log.info("starting from scratch: %d checkpoint(s) refused", len(plan.refused))
    if resume is not None and start_step >= settings.max_steps:
        # the run had finished: take its last checkpoint (Trainer would train one step more)
        log_history, global_step = load_finished_checkpoint(model, resume)
        log.info("checkpoint %s is the end of training; writing its adapter", resume)
    else:
        collator = DataCollatorForSeq2Seq(
            tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
        )
        extra = [_final_eval_callback()] if heldout else []
        trainer = _rng_neutral_trainer(Trainer)(
            model=model,
            args=args,
            train_dataset=examples,
            eval_dataset=heldout or None,
            data_collator=collator,
            callbacks=[*extra, *callbacks],
        )
        if "tensorboard" in settings.report_to and args.should_save:
            _resume_tensorboard(trainer, tracking_env["TENSORBOARD_LOGGING_DIR"], start_step)
        t0 = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        elapsed = time.perf_counter() - t0
        global_step = trainer.state.global_step
        log_history = trainer.state.log_history
        model = trainer.model
        log.info(
            "trained steps %d..%d in %.1f s (%.3f s/step); train_loss %.4f",
            start_step,
            global_step,
            elapsed,
            elapsed / max(global_step - start_step, 1),
            result.training_loss,
        )
    losses = loss_table(log_history)
    train_losses = losses.filter(pl.col("loss").is_not_null())
    held_losses = losses.filter(pl.col("heldout_loss").is_not_null())
    summary = {
        "group": job.group,
        "examples_in": drops.total,
        "examples_used": len(examples),
        "examples_heldout": len(heldout),
        "examples_dropped": drops.dropped,
        "steps": global_step,
        "num_processes": world,
        "precision": "bf16" if bf16 else "fp32",
        "final_loss": float(train_losses["loss"][-1]) if train_losses.height else None,
        "final_heldout_loss": (
            float(held_losses["heldout_loss"][-1]) if held_losses.height else None
        ),
        "settings": settings.science(),
        "data": counts,
        "base_model": job.base_model_spec or job.base_model,
        "tracking": {
            "report_to": list(settings.report_to),
            "run_name": job.run_name or job.group,
            "tensorboard_dir": tracking_env.get("TENSORBOARD_LOGGING_DIR"),
        },
        "resume": {
            "from_checkpoint": resume.name if resume else None,
            "resumed_steps": start_step,
            "trained_steps": global_step - start_step,
            "refused": plan.refused,
        },
    }
    if args.should_save:  # the main process
        from polyculture.model_card import training_card

        save_adapter_atomically(
            model, job.adapter_dir, training_card(summary, summary["base_model"])
        )
        write_parquet(losses, job.loss_path)
        write_parquet(drops.to_frame(), job.drops_path)
        write_json(summary, job.summary_path)
    return {**summary, "resumed_from_step": start_step}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------------------------
# launching


def free_port() -> int:
    """A TCP port that is free now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(job_file: str | os.PathLike[str], num_processes: int) -> list[str]:
    """The command that trains `job_file`: plain Python for one process, otherwise ONE
    `accelerate launch` process group of `num_processes` processes on this machine (torchrun
    underneath; NCCL on GPUs, gloo where CUDA is absent)."""
    entry = ["-m", "polyculture.train", "--job", str(job_file)]
    if num_processes <= 1:
        return [sys.executable, *entry]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--machine_rank",
        "0",
        "--main_process_port",
        str(free_port()),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",  # precision is the Trainer's (bf16 flag), not accelerate's
        "--multi_gpu",
        *entry,
    ]


def launch(
    job: TrainJob,
    num_processes: int,
    log_path: str | os.PathLike[str] | None = None,
    *,
    allow_cpu_group: bool = False,
) -> None:
    """Write the job file into the run directory and run the training command, appending its
    output to `log_path`; fails when the training process fails. A group of several processes
    needs CUDA unless `allow_cpu_group` (tests run a two-process group on the CPU)."""
    if num_processes > 1 and not allow_cpu_group and not _cuda_available():
        raise ConfigError(
            "train.gpus",
            f"{num_processes} GPU processes requested but CUDA is not available on this machine",
        )
    job_file = Path(job.run_dir) / "job.json"
    write_json(job.to_json(), job_file)
    cmd = launch_command(job_file, num_processes)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        if out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, env=env)
    finally:
        if out:
            out.close()
    if proc.returncode != 0:
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(f"training of '{job.group}' failed (exit {proc.returncode}){where}")


# --------------------------------------------------------------------------------------------
# figure


def plot_loss(table: pl.DataFrame, path: str | os.PathLike[str], title: str) -> None:
    """Training loss and held-out loss by step (left axis) with the learning rate (right
    axis), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyculture.io import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    train = table.filter(pl.col("loss").is_not_null()) if table.height else table
    held = (
        table.filter(pl.col("heldout_loss").is_not_null())
        if table.height and "heldout_loss" in table.columns
        else table.head(0)
    )
    if train.height:
        ax.plot(train["step"], train["loss"], marker="o", ms=3, color="tab:blue", label="training")
    if held.height:
        ax.plot(
            held["step"],
            held["heldout_loss"],
            marker="s",
            ms=4,
            color="tab:green",
            label="held out",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    if train.height or held.height:
        ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax2 = ax.twinx()
    if train.height:
        ax2.plot(train["step"], train["learning_rate"], color="tab:orange", lw=1, ls="--")
    ax2.set_ylabel("learning rate", color="tab:orange")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def summary_table(summaries: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per variant: examples trained on / held out / dropped, steps (all, and those
    taken from a checkpoint this run resumed from), final training and held-out loss."""
    return pl.DataFrame(
        [
            {
                "variant": s["group"],
                "examples_in": int(s["examples_in"]),
                "examples_used": int(s["examples_used"]),
                "examples_heldout": int(s["examples_heldout"]),
                "examples_dropped": int(s["examples_dropped"]),
                "steps": int(s["steps"]),
                "resumed_steps": int(s["resume"]["resumed_steps"]),
                "num_processes": int(s["num_processes"]),
                "precision": s["precision"],
                "final_loss": s["final_loss"],
                "final_heldout_loss": s["final_heldout_loss"],
            }
            for s in summaries
        ],
        schema={
            "variant": pl.String,
            "examples_in": pl.Int64,
            "examples_used": pl.Int64,
            "examples_heldout": pl.Int64,
            "examples_dropped": pl.Int64,
            "steps": pl.Int64,
            "resumed_steps": pl.Int64,
            "num_processes": pl.Int64,
            "precision": pl.String,
            "final_loss": pl.Float64,
            "final_heldout_loss": pl.Float64,
        },
    )


# --------------------------------------------------------------------------------------------
# entry point of each training process


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m polyculture.train --job job.json`: train one job (one process of a group)."""
    parser = argparse.ArgumentParser(prog="python -m polyculture.train", description=main.__doc__)
    parser.add_argument("--job", required=True, help="job file written by polyculture.train.launch")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    job = TrainJob.from_json(json.loads(Path(args.job).read_text("utf-8")))
    run_job(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
