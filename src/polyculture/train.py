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
from collections.abc import Mapping, Sequence
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
LOSS_COLUMNS = ("step", "loss", "learning_rate", "epoch", "grad_norm")
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

MaskMethod = Literal["auto", "template", "prefix"]


@dataclass(frozen=True)
class TrainSettings:
    """Every setting that shapes the trained adapter (the paper's values are the defaults)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
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
    # bookkeeping only: these do not change the result and are left out of the fingerprint
    save_steps: int = 100
    save_total_limit: int | None = 2
    logging_steps: int = 10

    NON_SCIENCE: ClassVar[tuple[str, ...]] = ("save_steps", "save_total_limit", "logging_steps")

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
        settings = cls(**data)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that cannot train (the config schema checks the same in the workflow)."""
        positive = ("lora_r", "per_device_batch_size", "gradient_accumulation_steps", "max_steps")
        for name in (*positive, "max_length", "save_steps", "logging_steps"):
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

    def to_mapping(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (inverse of :meth:`from_mapping`)."""
        d = asdict(self)
        if isinstance(d["target_modules"], tuple):
            d["target_modules"] = list(d["target_modules"])
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


def settings_from_config(section: Mapping[str, Any], seed: int) -> TrainSettings:
    """Training settings from the validated `train:` config section and the run's base seed
    (the stage's seed is `seed + train.seed_offset`)."""
    lora = section.get("lora", {})
    values = {
        "lora_r": lora.get("r", 16),
        "lora_alpha": lora.get("alpha", 32),
        "lora_dropout": lora.get("dropout", 0.05),
        "target_modules": lora.get("target_modules", "all-linear"),
        "seed": seed + section.get("seed_offset", 0),
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


def read_conversations(path: str | os.PathLike[str]) -> list[list[dict[str, str]]]:
    """Read the training JSONL (one {"messages": [...]} object per line); errors name the line."""
    records = read_jsonl(path)
    if not records:
        raise InputError(path, "no training examples (the file has no JSON lines)")
    conversations = []
    for lineno, record in enumerate(records, start=1):
        if "messages" not in record:
            raise InputError(path, f"record {lineno} has no 'messages' key")
        conversations.append(validate_messages(record["messages"], f"{path}: record {lineno}"))
    return conversations


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
            from polyculture.chat import assistant_spans_by_content, end_of_turn

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


def build_examples(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    settings: TrainSettings,
    drops: DropCounter,
) -> list[dict[str, list[int]]]:
    """Tokenize every conversation; count those without assistant tokens after truncation.
    A tokenizer without a chat template gets the plain format (polyculture.chat); system turns
    are merged into the first user turn where the template rejects them."""
    from polyculture.chat import analyze_template, prepare_conversation

    fmt = analyze_template(tokenizer)
    method = resolve_mask_method(tokenizer, settings.mask_method)
    examples = []
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
        else:
            examples.append(ex.as_features())
    return examples


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


def training_arguments(settings: TrainSettings, output_dir: str, bf16: bool, cuda: bool) -> Any:
    """transformers TrainingArguments for the settings (checkpoints every `save_steps`)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=settings.per_device_batch_size,
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
        report_to="none",
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


def latest_complete_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The latest checkpoint that was written to the end (trainer_state.json is saved last)."""
    found = checkpoint_steps(run_dir)
    for step in sorted(found, reverse=True):
        if (found[step] / "trainer_state.json").is_file():
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


def prepare_run_dir(job: TrainJob, fingerprint: Mapping[str, Any]) -> Path | None:
    """Make the run directory ready and return the checkpoint to resume from, if any.

    Checkpoints of a different run (other settings, data, base model or world size) and
    checkpoints cut short by a kill are removed; they cannot be resumed.
    """
    run = Path(job.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    fp_path = run / FINGERPRINT_FILE
    stale = True
    if fp_path.is_file():
        try:
            stale = json.loads(fp_path.read_text("utf-8")) != json.loads(json.dumps(fingerprint))
        except json.JSONDecodeError:
            stale = True
    if stale:
        for ckpt in checkpoint_steps(run).values():
            log.info("removing checkpoint of a different run: %s", ckpt)
            shutil.rmtree(ckpt)
        write_json(dict(fingerprint), fp_path)
        return None
    latest = latest_complete_checkpoint(run)
    for step, ckpt in checkpoint_steps(run).items():
        if latest is None or step > checkpoint_step(latest):
            log.info("removing incomplete checkpoint %s", ckpt)
            shutil.rmtree(ckpt)
    return latest


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
    """Training-loss rows of a Trainer log history: step, loss, learning_rate, epoch, grad_norm."""
    rows = [
        {
            "step": int(e["step"]),
            "loss": float(e["loss"]),
            "learning_rate": float(e.get("learning_rate", math.nan)),
            "epoch": float(e.get("epoch", math.nan)),
            "grad_norm": float(e.get("grad_norm", math.nan)),
        }
        for e in log_history
        if "loss" in e and "step" in e
    ]
    schema = {
        "step": pl.Int64,
        "loss": pl.Float64,
        "learning_rate": pl.Float64,
        "epoch": pl.Float64,
        "grad_norm": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).unique("step", keep="last").sort("step")


def save_adapter_atomically(model: Any, adapter_dir: str | os.PathLike[str]) -> None:
    """Save the PEFT adapter to a temporary sibling directory, then rename it into place."""
    target = Path(adapter_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (1 process when not launched)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def run_job(job: TrainJob, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one LoRA adapter (resuming from the latest matching checkpoint) and write the
    adapter, the loss table, the drop table and a summary; returns the summary plus the step
    this invocation resumed from (`resumed_from_step`, 0 for a fresh start).

    In a process group every rank trains; only rank 0 prepares the run directory and writes
    outputs. `callbacks` are extra transformers TrainerCallbacks.
    """
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer

    settings = job.settings
    _, world = _world()
    if job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    cuda = torch.cuda.is_available()
    bf16 = use_bf16(settings, cuda)

    tokenizer = load_tokenizer(job.base_model)
    drops = DropCounter(stage=DROP_STAGE, group=job.group)
    examples = build_examples(tokenizer, read_conversations(job.data), settings, drops)
    drops.check(settings.max_drop_rate)
    if not examples:
        raise InputError(job.data, "no example has assistant tokens within max_length")

    # creating the arguments sets up the process group when launched by accelerate
    args = training_arguments(settings, job.run_dir, bf16, cuda)
    fingerprint = run_fingerprint(job, world)
    with args.main_process_first(desc="checkpoint lookup"):
        resume = prepare_run_dir(job, fingerprint)

    model = load_lora_model(job.base_model, settings, bf16)
    start_step = checkpoint_step(resume) if resume else 0
    log.info(
        "training %s: %d examples (%d dropped), %d steps, %d process(es), %s, %s",
        job.group,
        len(examples),
        drops.dropped,
        settings.max_steps,
        world,
        "bf16" if bf16 else "fp32",
        f"resuming from {resume}" if resume else "from scratch",
    )
    if resume is not None and start_step >= settings.max_steps:
        # the run had finished: take its last checkpoint (Trainer would train one step more)
        log_history, global_step = load_finished_checkpoint(model, resume)
        log.info("checkpoint %s is the end of training; writing its adapter", resume)
    else:
        collator = DataCollatorForSeq2Seq(
            tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=collator,
            callbacks=list(callbacks),
        )
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
    summary = {
        "group": job.group,
        "examples_in": drops.total,
        "examples_used": len(examples),
        "examples_dropped": drops.dropped,
        "steps": global_step,
        "num_processes": world,
        "precision": "bf16" if bf16 else "fp32",
        "final_loss": float(losses["loss"][-1]) if losses.height else None,
        "settings": settings.science(),
    }
    if args.should_save:  # the main process
        save_adapter_atomically(model, job.adapter_dir)
        write_parquet(losses, job.loss_path)
        write_parquet(drops.to_frame(), job.drops_path)
        write_json(summary, job.summary_path)
    # where this invocation started is not written: a resumed run's outputs equal a straight one's
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
    """Training loss by step (left axis) with the learning rate (right axis), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyculture.io import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    if table.height:
        ax.plot(table["step"], table["loss"], marker="o", ms=3, color="tab:blue", label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title(title)
    ax2 = ax.twinx()
    if table.height:
        ax2.plot(table["step"], table["learning_rate"], color="tab:orange", lw=1, ls="--")
    ax2.set_ylabel("learning rate", color="tab:orange")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def summary_table(summaries: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per variant: examples used / dropped, steps, first and final loss."""
    return pl.DataFrame(
        [
            {
                "variant": s["group"],
                "examples_in": int(s["examples_in"]),
                "examples_used": int(s["examples_used"]),
                "examples_dropped": int(s["examples_dropped"]),
                "steps": int(s["steps"]),
                "num_processes": int(s["num_processes"]),
                "precision": s["precision"],
                "final_loss": s["final_loss"],
            }
            for s in summaries
        ]
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
