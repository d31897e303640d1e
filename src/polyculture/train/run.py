"""One training job in one process (`python -m polyculture.train --job job.json`): tokenize,
resume or start, train, write the outputs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.io import write_json, write_parquet
from polyculture.train.checkpoints import (
    ResumePlan,
    fingerprint_hash,
    load_finished_checkpoint,
    prepare_run_dir,
    run_fingerprint,
    save_adapter_atomically,
)
from polyculture.train.data import (
    DROP_STAGE,
    IGNORE_INDEX,
    heldout_split,
    read_training_records,
    split_counts,
)
from polyculture.train.masking import tokenize_examples
from polyculture.train.model import load_lora_model, load_tokenizer, training_arguments
from polyculture.train.report import loss_table
from polyculture.train.settings import TrainJob, TrainSettings, check_trackers, use_bf16
from polyculture.train.tracking import _environment, _resume_tensorboard, tracking_environment

log = logging.getLogger("polyculture.train")


def _world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (1 process when not launched)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


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
    _log_start(job, settings, plan, world, bf16, len(examples), len(heldout), drops.dropped)
    if resume is not None and start_step >= settings.max_steps:
        # the run had finished: take its last checkpoint (Trainer would train one step more)
        log_history, global_step = load_finished_checkpoint(model, resume)
        log.info("checkpoint %s is the end of training; writing its adapter", resume)
    else:
        model, log_history, global_step = _fit(
            model, args, tokenizer, examples, heldout, callbacks, settings, tracking_env, plan
        )
    losses = loss_table(log_history)
    summary = _summary(
        job, settings, plan, world, bf16, drops, examples, heldout, counts, tracking_env
    )
    summary = {**summary, **_loss_summary(losses, global_step, plan)}
    if args.should_save:  # the main process
        from polyculture.model_card import training_card

        save_adapter_atomically(
            model, job.adapter_dir, training_card(summary, summary["base_model"])
        )
        write_parquet(losses, job.loss_path)
        write_parquet(drops.to_frame(), job.drops_path)
        write_json(summary, job.summary_path)
    return {**summary, "resumed_from_step": start_step}


def _log_start(
    job: TrainJob,
    settings: TrainSettings,
    plan: ResumePlan,
    world: int,
    bf16: bool,
    n_examples: int,
    n_heldout: int,
    n_dropped: int,
) -> None:
    """Log what the run trains and where it starts (from scratch or from which checkpoint)."""
    resume = plan.checkpoint
    log.info(
        "training %s: %d examples (%d held out, %d dropped), %d steps, %d process(es), %s, %s",
        job.group,
        n_examples,
        n_heldout,
        n_dropped,
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
            plan.step,
            settings.max_steps,
            plan.fingerprint_hash,
            world,
        )
    elif plan.refused:
        log.info("starting from scratch: %d checkpoint(s) refused", len(plan.refused))


def _fit(
    model: Any,
    args: Any,
    tokenizer: Any,
    examples: list[dict[str, list[int]]],
    heldout: list[dict[str, list[int]]],
    callbacks: Sequence[Any],
    settings: TrainSettings,
    tracking_env: Mapping[str, str],
    plan: ResumePlan,
) -> tuple[Any, list[dict[str, Any]], int]:
    """Train with the transformers Trainer (resuming from the plan's checkpoint, if any);
    returns the trained model, the log history and the global step reached."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    resume = plan.checkpoint
    start_step = plan.step
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
    log.info(
        "trained steps %d..%d in %.1f s (%.3f s/step); train_loss %.4f",
        start_step,
        global_step,
        elapsed,
        elapsed / max(global_step - start_step, 1),
        result.training_loss,
    )
    return trainer.model, trainer.state.log_history, global_step


def _summary(
    job: TrainJob,
    settings: TrainSettings,
    plan: ResumePlan,
    world: int,
    bf16: bool,
    drops: DropCounter,
    examples: Sequence[Any],
    heldout: Sequence[Any],
    counts: list[dict[str, Any]],
    tracking_env: Mapping[str, str],
) -> dict[str, Any]:
    """The run's summary without its losses and steps (see :func:`_loss_summary`)."""
    return {
        "group": job.group,
        "examples_in": drops.total,
        "examples_used": len(examples),
        "examples_heldout": len(heldout),
        "examples_dropped": drops.dropped,
        "steps": None,
        "num_processes": world,
        "precision": "bf16" if bf16 else "fp32",
        "final_loss": None,
        "final_heldout_loss": None,
        "settings": settings.science(),
        "data": counts,
        "base_model": job.base_model_spec or job.base_model,
        "tracking": {
            "report_to": list(settings.report_to),
            "run_name": job.run_name or job.group,
            "tensorboard_dir": tracking_env.get("TENSORBOARD_LOGGING_DIR"),
        },
        "resume": None,
    }


def _loss_summary(losses: pl.DataFrame, global_step: int, plan: ResumePlan) -> dict[str, Any]:
    """The summary's steps, final losses and resume record."""
    train_losses = losses.filter(pl.col("loss").is_not_null())
    held_losses = losses.filter(pl.col("heldout_loss").is_not_null())
    return {
        "steps": global_step,
        "final_loss": float(train_losses["loss"][-1]) if train_losses.height else None,
        "final_heldout_loss": (
            float(held_losses["heldout_loss"][-1]) if held_losses.height else None
        ),
        "resume": {
            "from_checkpoint": plan.checkpoint.name if plan.checkpoint else None,
            "resumed_steps": plan.step,
            "trained_steps": global_step - plan.step,
            "refused": plan.refused,
        },
    }


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
