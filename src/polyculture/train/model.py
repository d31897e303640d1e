"""The LoRA model, its tokenizer and the transformers TrainingArguments of a run."""

from __future__ import annotations

from typing import Any

from polyculture.train.settings import TrainSettings


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


def load_tokenizer(base_model: str) -> Any:
    """The base model's tokenizer, set up for training (right padding; pad = eos if unset)."""
    from polyculture.backends.generation.base import load_tokenizer as load_plain_tokenizer

    tok = load_plain_tokenizer(base_model)
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
