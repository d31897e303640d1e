# Settings and helpers of stage group 'consensus' (kept apart from its rules, as the linter asks).
import re

from polyculture.workflow import check_requests, check_self_supervision, check_sources

CONS = f"{RESULTS}/consensus"
CONS_CFG = config["consensus"]
CONS_BACKEND = generation_params(CONS_CFG["generator"])
CONS_TRANSLATOR = config["translator"]
CONS_VARIANTS = CONS_CFG["variants"]
CONS_SELECTIONS = sorted({v["selection"] for v in CONS_VARIANTS.values()})
#: Sampling and embedding shards (a number, or `auto`: rules/common.smk stage_shards).
CONS_SHARDS = [
    str(i) for i in range(stage_shards("consensus.shards", CONS_CFG["generator"]))
]
CONS_SEED = stage_seeds("consensus")
CONS_VARIANT_RE = "|".join(re.escape(v) for v in CONS_VARIANTS)
CONS_SELECTION_RE = "|".join(CONS_SELECTIONS)

if config["pipelines"]["consensus"]:
    check_sources(CONS_CFG["sources"])
    check_requests(CONS_CFG["requests"])
    check_self_supervision(config)


def consensus_targets():
    """Final outputs of this stage group that rule all requests."""
    return [
        *(f"{CONS}/{v}/train.jsonl" for v in CONS_VARIANTS),
        *(f"{CONS}/{v}/counts.md" for v in CONS_VARIANTS),
        f"{CONS}/drops.md",
    ]


def consensus_translator():
    """Translator settings with the model spec resolved to a loadable path."""
    tr = dict(CONS_TRANSLATOR)
    if tr.get("model"):
        tr["model"] = model_path(tr["model"])
    if CONS_CFG["translation"]["max_new_tokens"]:
        tr["max_new_tokens"] = CONS_CFG["translation"]["max_new_tokens"]
    return tr


def consensus_translator_input():
    """The translator's built-in model, if it needs one (kind memory: its table)."""
    tr = CONS_TRANSLATOR
    if tr.get("kind") == "memory":
        return [tr["path"]]
    return (
        model_input(tr["model"])
        if tr.get("kind") in ("llm", "nllb") and tr.get("model")
        else []
    )


def consensus_generator(wildcards):
    """Loadable path or hub id of model M."""
    return model_path(CONS_CFG["generator"])


def consensus_embedder(wildcards):
    """Loadable path or hub id of the answer embedder."""
    return model_path(CONS_CFG["embedder"])


def consensus_stage_params(stage):
    """Sampling settings and drop limit of a generating stage."""
    return {
        "sampling": CONS_CFG[stage]["sampling"],
        "max_drop_rate": CONS_CFG[stage]["max_drop_rate"],
    }
