"""What a run reports: the loss table of a Trainer's log history, the loss figure and the
summary table of all variants."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

LOSS_COLUMNS = ("step", "loss", "learning_rate", "epoch", "grad_norm", "heldout_loss")


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


def plot_loss(table: pl.DataFrame, path: str | os.PathLike[str], title: str) -> None:
    """Training loss and held-out loss by step (left axis) with the learning rate (right
    axis), as PNG."""
    from polyculture.plots import DPI, plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=DPI)
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
    save_figure(fig, path)


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
