# Settings and helpers of the 'models' rules (rules/models.smk), and models_targets().
import re

from polyculture.workflow import CORPUS_FILES, REAL_MODELS, builtin_models_used

BUILTIN_CFG = config["builtin_models"]
# exactly the corpus files (other demo files under resources/demo do not rebuild the models)
TINY_CORPUS = [f"{BUILTIN_CFG['corpus_path']}/{name}" for name in CORPUS_FILES]
MODELS_SEED = stage_seeds("models")


def models_targets():
    """The built-in models the config names, unless every model-running stage group is off
    (a config of hub models builds none)."""
    groups = ("consensus", "train", "evaluate", "wvs")
    if not any(config["pipelines"][g] for g in groups):
        return []
    return [f"{MODELS_DIR}/{name}" for name in builtin_models_used(config)]


def tiny_settings(section):
    """Settings of one built-in model: its section plus the shared vocabulary and threads."""
    return {
        **BUILTIN_CFG[section],
        "vocab_size": BUILTIN_CFG["vocab_size"],
        "threads": BUILTIN_CFG["threads"],
    }
