"""Checks of the consensus section against the rest of the config (run before any job)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyculture.errors import ConfigError


def check_self_supervision(config: Mapping[str, Any]) -> None:
    """The method is self-supervised: the model that writes the training data (questions,
    answers, g*, critiques) is the model that is trained on it (paper §3, "distill reliable
    cultural knowledge from a base model M"; §4.1: Llama 3.1 8B Instruct "for training data
    synthesis and fine-tuning"). Where both stage groups run, `consensus.generator` must equal
    `train.base_model`, unless `consensus.allow_other_generator` says otherwise on purpose."""
    pipelines = config.get("pipelines", {})
    if not (pipelines.get("consensus") and pipelines.get("train")):
        return
    cons, train = config.get("consensus", {}), config.get("train", {})
    if cons.get("allow_other_generator"):
        return
    generator, base = cons.get("generator"), train.get("base_model")
    if generator != base:
        raise ConfigError(
            "consensus.generator",
            f"{generator!r} differs from train.base_model {base!r}: the method trains the "
            "model that generated its own data (self-supervision, paper §3 and §4.1); use the "
            "same model in both keys, or set consensus.allow_other_generator: true to train "
            "another model on this data on purpose",
        )
