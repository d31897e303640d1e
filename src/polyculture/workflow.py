"""What the rule files (Snakefile, rules/*.smk) use of the library at parse time, in one place:
the config check, model specs and the prefetch items, the built-in models' inputs, the
pipelines' cross-key checks, the BLEnD file layout, the specification-curve grid, the training
settings and the report's tables. The rule files import from this module only
(tests/test_boundaries.py checks it), so what the workflow's plan depends on is this list."""

from polyculture.backends.builtin.real_models import REAL_MODELS
from polyculture.backends.builtin.tiny_corpus import CORPUS_FILES
from polyculture.backends.engine import (
    engine_gpus,
    engine_groups,
    engine_options,
    node_gpu_problems,
)
from polyculture.backends.generation.openai import usage_path_for
from polyculture.backends.spec import parse_model_spec
from polyculture.blend import (
    annotations_path,
    load_prompt_templates,
    prompts_path,
    questions_path,
    run_languages,
)
from polyculture.compare import pair_models
from polyculture.config_check import (
    adapter_kind,
    api_models_used,
    builtin_models_used,
    config_problems,
    config_warnings,
    format_problems,
    lm_eval_skipped,
    wvs_population_needed,
)
from polyculture.consensus.config import check_self_supervision
from polyculture.consensus.dialogues import check_requests
from polyculture.consensus.statements import check_sources
from polyculture.errors import ConfigError
from polyculture.evals import (
    benchmark_entries,
    benchmark_inputs,
    check_benchmark,
    fetches_data,
    load_benchmark,
    with_fetched_data,
)
from polyculture.evals.blend import overrides_from_config as blend_overrides
from polyculture.logs import OFFLINE_ENV
from polyculture.placement import (
    announce_localrules,
    network_localrules,
    placed_groups,
    site_groups,
    site_placement,
)
from polyculture.placement import placed as placed_resources
from polyculture.placement import placed_threads as placed_threads_of
from polyculture.plan import check_budget
from polyculture.plan.work import shard_count
from polyculture.prefetch import hub_items, item_slug
from polyculture.release import check_repo_id
from polyculture.summary import TABLES as SUMMARY_TABLES
from polyculture.train import check_adapter_bases, check_trackers, settings_from_config
from polyculture.wvs.specgrid import expand_grid, grid_size_message, resolve_mixed_formula

__all__ = [
    "check_budget",
    "shard_count",
    "site_placement",
    "announce_localrules",
    "network_localrules",
    "placed_groups",
    "site_groups",
    "placed_threads_of",
    "placed_resources",
    "node_gpu_problems",
    "engine_options",
    "engine_gpus",
    "engine_groups",
    "CORPUS_FILES",
    "OFFLINE_ENV",
    "REAL_MODELS",
    "SUMMARY_TABLES",
    "ConfigError",
    "adapter_kind",
    "annotations_path",
    "benchmark_entries",
    "blend_overrides",
    "benchmark_inputs",
    "check_benchmark",
    "fetches_data",
    "load_benchmark",
    "api_models_used",
    "builtin_models_used",
    "check_adapter_bases",
    "check_repo_id",
    "check_requests",
    "check_self_supervision",
    "check_sources",
    "check_trackers",
    "config_problems",
    "config_warnings",
    "expand_grid",
    "format_problems",
    "grid_size_message",
    "hub_items",
    "item_slug",
    "lm_eval_skipped",
    "load_prompt_templates",
    "pair_models",
    "parse_model_spec",
    "prompts_path",
    "questions_path",
    "resolve_mixed_formula",
    "run_languages",
    "settings_from_config",
    "usage_path_for",
    "with_fetched_data",
    "wvs_population_needed",
]
