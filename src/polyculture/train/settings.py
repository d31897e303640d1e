"""Training settings (the paper's values are the defaults), the job that a training process
runs, and the checks of the config's `train:` section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from polyculture.errors import ConfigError

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


def check_adapter_bases(
    eval_models: Sequence[Mapping[str, Any]],
    base_model: str,
    variants: Sequence[str] | None = None,
) -> None:
    """Every eval model that applies an adapter trained here (one of `variants`; every adapter
    where None) names the base the adapters are trained on (a LoRA adapter only fits the model
    it was trained on). Adapters from outside the workflow are checked by
    polyculture.config_check against their adapter_config.json."""
    for i, m in enumerate(eval_models):
        trained = m.get("adapter") and (variants is None or m["adapter"] in variants)
        if trained and m.get("model") != base_model:
            raise ConfigError(
                f"eval_models[{i}].model",
                f"'{m.get('model')}' applies adapter '{m['adapter']}', which is trained on "
                f"train.base_model '{base_model}'; use that model",
            )


def threads_per_process(threads: int, num_processes: int) -> int:
    """CPU threads of each training process when a job's threads are shared by its processes."""
    return max(1, int(threads) // max(1, int(num_processes)))


def use_bf16(settings: TrainSettings, cuda: bool) -> bool:
    """bf16 on CUDA ('auto'), fp32 on CPU; 'bf16' / 'fp32' force one."""
    if settings.precision == "auto":
        return cuda
    return settings.precision == "bf16"
