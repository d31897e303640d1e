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
end-of-turn tokens after it (``polyculture.backends.chat.assistant_spans_by_content``); one that does not
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

from polyculture.drops import DropCounter
from polyculture.io import file_sha256
from polyculture.train.checkpoints import (
    CHECKPOINT_RE,
    FINGERPRINT_FILE,
    ResumePlan,
    checkpoint_complete,
    checkpoint_step,
    checkpoint_steps,
    fingerprint_differences,
    fingerprint_hash,
    latest_complete_checkpoint,
    load_finished_checkpoint,
    prepare_run_dir,
    run_fingerprint,
    save_adapter_atomically,
)
from polyculture.train.data import (
    DROP_STAGE,
    GENERAL_REGION,
    IGNORE_INDEX,
    NO_REGION,
    ROLES,
    TokenizedExample,
    TrainRecord,
    heldout_split,
    read_conversations,
    read_training_records,
    split_counts,
    validate_messages,
)
from polyculture.train.launch import free_port, launch, launch_command
from polyculture.train.masking import (
    assistant_char_spans,
    assistant_mask,
    assistant_mask_by_prefix,
    assistant_mask_from_template,
    build_examples,
    has_generation_markers,
    resolve_mask_method,
    tokenize_conversation,
    tokenize_examples,
    truncate,
)
from polyculture.train.model import (
    load_lora_model,
    load_tokenizer,
    lora_config,
    lora_target_names,
    training_arguments,
)
from polyculture.train.report import LOSS_COLUMNS, loss_table, plot_loss, summary_table
from polyculture.train.run import main, run_job
from polyculture.train.settings import (
    REPORT_TO_CHOICES,
    TRACKER_MODULES,
    MaskMethod,
    TrainJob,
    TrainSettings,
    check_adapter_bases,
    check_trackers,
    report_to_tuple,
    settings_from_config,
    threads_per_process,
    use_bf16,
)
from polyculture.train.tracking import TRACKING_DIRS, read_tensorboard_scalars, tracking_environment

__all__ = [
    "DropCounter",
    "CHECKPOINT_RE",
    "DROP_STAGE",
    "FINGERPRINT_FILE",
    "GENERAL_REGION",
    "IGNORE_INDEX",
    "LOSS_COLUMNS",
    "MaskMethod",
    "NO_REGION",
    "REPORT_TO_CHOICES",
    "ROLES",
    "ResumePlan",
    "TRACKER_MODULES",
    "TRACKING_DIRS",
    "TokenizedExample",
    "TrainJob",
    "TrainRecord",
    "TrainSettings",
    "assistant_char_spans",
    "assistant_mask",
    "assistant_mask_by_prefix",
    "assistant_mask_from_template",
    "build_examples",
    "check_adapter_bases",
    "check_trackers",
    "checkpoint_complete",
    "checkpoint_step",
    "checkpoint_steps",
    "file_sha256",
    "fingerprint_differences",
    "fingerprint_hash",
    "free_port",
    "has_generation_markers",
    "heldout_split",
    "latest_complete_checkpoint",
    "launch",
    "launch_command",
    "load_finished_checkpoint",
    "load_lora_model",
    "load_tokenizer",
    "lora_config",
    "lora_target_names",
    "loss_table",
    "main",
    "plot_loss",
    "prepare_run_dir",
    "read_conversations",
    "read_tensorboard_scalars",
    "read_training_records",
    "report_to_tuple",
    "resolve_mask_method",
    "run_fingerprint",
    "run_job",
    "save_adapter_atomically",
    "settings_from_config",
    "split_counts",
    "summary_table",
    "threads_per_process",
    "tokenize_conversation",
    "tokenize_examples",
    "tracking_environment",
    "training_arguments",
    "truncate",
    "use_bf16",
    "validate_messages",
]
