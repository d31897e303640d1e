# Settings and helpers of the release rules (model_card, merge_adapter, push_to_hub in
# rules/report.smk), and release_targets().
# Included after every stage group: the model cards read the evaluation tables.
from polyculture.workflow import ConfigError

RELEASE_DIR = f"{RESULTS}/release"
CARD = TRAIN["card"]
MERGE_VARIANTS = TRAIN["merge"]
PUSH = TRAIN["push_to_hub"]


def _release_checks():
    """Config checks that JSON Schema cannot express; they fail before any job."""
    unknown = [v for v in MERGE_VARIANTS if v not in TRAIN_VARIANTS]
    if unknown:
        raise ConfigError(
            "train.merge",
            f"{', '.join(unknown)} not in train.variants ({', '.join(TRAIN_VARIANTS)})",
        )
    if PUSH["enabled"]:
        from polyculture.workflow import check_repo_id

        if not PUSH.get("repo_id"):
            raise ConfigError(
                "train.push_to_hub.repo_id", "required when push_to_hub is enabled"
            )
        for v in TRAIN_VARIANTS:
            check_repo_id(PUSH["repo_id"].replace("{variant}", v))
        if len(TRAIN_VARIANTS) > 1 and "{variant}" not in PUSH["repo_id"]:
            raise ConfigError(
                "train.push_to_hub.repo_id",
                "needs {variant} when several variants are trained (one repository each)",
            )
        if not PUSH.get("local_dir"):
            from huggingface_hub import get_token

            if not get_token():
                raise ConfigError(
                    "train.push_to_hub",
                    "no Hugging Face token: set HF_TOKEN in the environment (or run "
                    "`hf auth login`); the token is never read from the config",
                )


if config["pipelines"]["train"]:
    _release_checks()


def card_eval_models(variant):
    """Names of the eval models that apply a variant's adapter (their results go on its card)."""
    return [n for n, m in EVAL_MODELS.items() if m.get("adapter") == variant]


def card_base_eval_model():
    """The eval model that is the adapters' base model without an adapter, if one is listed."""
    for name, m in EVAL_MODELS.items():
        if m["model"] == TRAIN["base_model"] and not m.get("adapter"):
            return name
    return None


def card_has_alignment():
    """Whether the run's WVS alignment tables cover the eval models (the workflow's responses)."""
    return config["pipelines"]["alignment"] and AL["responses"]["source"] == "workflow"


def model_card_input(wildcards):
    """The adapter, its training summary and the evaluation tables its card reads."""
    v = wildcards.train_variant
    files = {
        "adapter": adapter_dir(v),
        "summary": f"{train_dir(v)}/summary.json",
    }
    if card_eval_models(v):
        if config["pipelines"]["evaluate"]:
            files["blend_scores"] = f"{COMPARE_DIR}/blend_scores.parquet"
            files["general_scores"] = f"{COMPARE_DIR}/general_scores.parquet"
            files.update(
                {
                    f"benchmark_{i}": f"{benchmark_dir(b)}/summary.json"
                    for i, b in enumerate(BENCHMARKS)
                }
            )
        if card_has_alignment():
            files["alignment"] = f"{ALIGN}/alignment.parquet"
            files["consistency"] = f"{ALIGN}/self_consistency.parquet"
    return files


def card_datasets():
    """Hub dataset ids of the training data: the general instruction data, then the config's."""
    ids = []
    general = config["consensus"]["general"]
    if general.get("hub") and not general.get(
        "path"
    ):  # a local path takes the hub's place
        ids.append(general["hub"])
    return list(dict.fromkeys([*ids, *CARD["datasets"]]))


def card_blend_dataset():
    """How the card's model-index names the BLEnD data this run used."""
    if BLEND_FROM_HUB:
        return {
            "type": BLEND["hub_dataset"],
            "name": "BLEnD",
            "revision": str(BLEND["hub_revision"]),
        }
    return {"type": "local", "name": f"BLEnD-format data at {BLEND['data_path']}"}


def push_repo_id(wildcards):
    """The Hub repository of a variant."""
    return PUSH["repo_id"].replace("{variant}", wildcards.train_variant)


def release_targets():
    """Final outputs of the release rules that rule all requests (with the train pipeline)."""
    if not config["pipelines"]["train"]:
        return []
    targets = [f"{RELEASE_DIR}/{v}" for v in TRAIN_VARIANTS]
    targets += [f"{RELEASE_DIR}/merged/{v}" for v in MERGE_VARIANTS]
    if PUSH["enabled"]:
        targets += [f"{RELEASE_DIR}/pushed/{v}.json" for v in TRAIN_VARIANTS]
    return targets
