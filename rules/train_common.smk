# Settings and helpers of stage group 'train' (kept apart from its rules, as the linter asks).
import re

from polyculture.workflow import (
    ConfigError,
    check_adapter_bases,
    check_trackers,
    settings_from_config,
)

TRAIN = config["train"]
TRAIN_VARIANTS = TRAIN["variants"]
TRAIN_VARIANT_RE = "|".join(re.escape(v) for v in TRAIN_VARIANTS)
TRAIN_SETTINGS = settings_from_config(TRAIN, SEED).to_mapping()

check_adapter_bases(config["eval_models"], TRAIN["base_model"], TRAIN_VARIANTS)
if config["pipelines"]["train"]:
    check_trackers(TRAIN_SETTINGS["report_to"])


def train_dir(variant):
    """Output directory of one training variant."""
    return f"{RESULTS}/train/{variant}"


def train_base_model(wildcards):
    """Loadable path or hub id of the base model the adapters are trained on."""
    return model_path(TRAIN["base_model"])


def train_run_dir(wildcards):
    """Run directory of a variant: checkpoints and the job file, kept across reruns."""
    return f"{train_dir(wildcards.train_variant)}/run"


def train_run_name(wildcards):
    """Name of a variant's run in the trackers: <run_name>-<variant>."""
    return f"{config['run_name']}-{wildcards.train_variant}"


def train_loss_title(wildcards):
    """Title of a variant's loss figure."""
    return f"LoRA training loss: {wildcards.train_variant}"


def train_targets():
    """Final outputs of this stage group that rule all requests."""
    return [
        *(adapter_dir(v) for v in TRAIN_VARIANTS),
        *(f"{train_dir(v)}/loss.parquet" for v in TRAIN_VARIANTS),
        *(f"{train_dir(v)}/loss.png" for v in TRAIN_VARIANTS),
        f"{RESULTS}/train/summary.tsv",
        f"{RESULTS}/train/drops.parquet",
    ]
