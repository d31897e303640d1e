"""Experiment trackers: their environment under the run directory, and TensorBoard's events of a
resumed run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.errors import InputError

TRACKING_DIRS = ("tensorboard", "wandb", "mlruns")


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
