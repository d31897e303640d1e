# Settings and helpers of stage group 'evaluate' (rules/evaluate.smk), and evaluate_targets().
import re

from polyculture.workflow import (
    ConfigError,
    annotations_path,
    blend_overrides,
    engine_groups,
    lm_eval_skipped,
    load_benchmark,
    load_prompt_templates,
    pair_models,
    prompts_path,
    questions_path,
    run_languages,
)

EVAL = config["evaluate"]
BLEND = EVAL["blend"]
GENERAL = EVAL["general"]
COMPARE = EVAL["compare"]
EVAL_DIR = f"{RESULTS}/evaluate"
BLEND_DIR = f"{EVAL_DIR}/blend"
GENERAL_DIR = f"{EVAL_DIR}/general"
COMPARE_DIR = f"{EVAL_DIR}/compare"
BLEND_FROM_HUB = not BLEND.get("data_path")
BLEND_DATA = f"{BLEND_DIR}/data" if BLEND_FROM_HUB else BLEND["data_path"]
BLEND_COUNTRIES = BLEND["countries"]
#: The blend benchmark folder (polyculture.evals.blend) with the evaluate.blend settings: its
#: BENCHMARK scores the answers (rule blend_score).
BLEND_BENCHMARK = load_benchmark("blend", blend_overrides(BLEND, BLEND_DATA))
BLEND_PROMPTS = BLEND["prompts"]
BLEND_RUNS = [
    (country, language, prompt)
    for country in BLEND_COUNTRIES
    for language in run_languages(country)
    for prompt in BLEND_PROMPTS
]
EVAL_SEED = {
    "blend": SEED + BLEND["seed_offset"],
    "general": SEED + GENERAL["seed_offset"],
    "compare": SEED + COMPARE["seed_offset"],
}
EVAL_PAIRS, EVAL_PAIR_NOTES = pair_models(config["eval_models"])
EVAL_MODEL_RE = "|".join(re.escape(m) for m in EVAL_MODELS) or "(?!)"
#: Eval models that lm_eval runs: not the API models that the config check can tell run none of
#: the tasks (a local task folder's log-likelihood tasks need weights; an API model runs the
#: generative ones through chat completions, and its job refuses the log-likelihood tasks of
#: lm_eval's own collection by name). Their lm_eval job is not planned rather than written as a
#: "skipped" record: the comparison leaves the pairs without general results out with a note
#: (polyculture.compare.pairs_with_results); the config check warns.
LM_EVAL_SKIPPED = lm_eval_skipped(config, Path.cwd())
GENERAL_MODELS = [m for m in EVAL_MODELS if m not in LM_EVAL_SKIPPED]
GENERAL_MODEL_RE = "|".join(re.escape(m) for m in GENERAL_MODELS) or "(?!)"
BLEND_COUNTRY_RE = "|".join(BLEND_COUNTRIES)
#: One BLEnD generation job (one engine) per group of eval models sharing a base model and its
#: backend settings: the base model and its adapters (polyculture.backends.engine.engine_groups),
#: named by the group's first eval model.
BLEND_ENGINES = engine_groups(config["eval_models"])
BLEND_ENGINE_OF = {m: g for g, members in BLEND_ENGINES.items() for m in members}
BLEND_ENGINE_RE = "|".join(re.escape(g) for g in BLEND_ENGINES) or "(?!)"


def check_blend_data():
    """Every configured country has its three files and the configured prompt templates."""
    for country in BLEND_COUNTRIES:
        for path in (
            questions_path(BLEND_DATA, country),
            annotations_path(BLEND_DATA, country),
            prompts_path(BLEND_DATA, country),
        ):
            if not path.is_file():
                raise ConfigError(
                    "evaluate.blend.countries",
                    f"{country}: {path} does not exist (expected the BLEnD layout under "
                    f"evaluate.blend.data_path = {BLEND_DATA})",
                )
        missing = set(BLEND_PROMPTS) - set(
            load_prompt_templates(prompts_path(BLEND_DATA, country))
        )
        if missing:
            raise ConfigError(
                "evaluate.blend.prompts",
                f"template(s) {', '.join(sorted(missing))} not in {prompts_path(BLEND_DATA, country)}",
            )


if config["pipelines"]["evaluate"] and not BLEND_FROM_HUB:
    check_blend_data()


def blend_country_input(wildcards):
    """Data files one country's rules read (the downloaded folder when the data comes from the hub)."""
    if BLEND_FROM_HUB:
        return [BLEND_DATA]
    country = wildcards.blend_country
    return [
        str(questions_path(BLEND_DATA, country)),
        str(annotations_path(BLEND_DATA, country)),
        str(prompts_path(BLEND_DATA, country)),
    ]


def blend_all_input(wildcards):
    """Data files of every configured country."""
    if BLEND_FROM_HUB:
        return [BLEND_DATA]
    return [
        str(f(BLEND_DATA, c))
        for c in BLEND_COUNTRIES
        for f in (questions_path, annotations_path, prompts_path)
    ]


def blend_answers(model):
    """Answer tables of every country of one eval model (each holds all languages × templates)."""
    return [f"{BLEND_DIR}/{model}/answers/{c}.parquet" for c in BLEND_COUNTRIES]


def blend_runs():
    """(language, prompt template) pairs asked of each country, by country."""
    return {
        country: [[lang, p] for c, lang, p in BLEND_RUNS if c == country]
        for country in BLEND_COUNTRIES
    }


def blend_engine_input(wildcards):
    """Base model (built-in) and adapters of every eval model one BLEnD engine serves."""
    files = []
    for name in BLEND_ENGINES[wildcards.blend_engine]:
        files += [f for f in eval_model_input(name) if f not in files]
    return files


def blend_engine_members(wildcards):
    """Name and load settings of every eval model one BLEnD engine serves, in config order."""
    return [
        {"name": name, **eval_model_params(name)}
        for name in BLEND_ENGINES[wildcards.blend_engine]
    ]


def blend_engine_answers(wildcards):
    """The answer table of the engine that serves the eval model of a per-country rule."""
    return f"{BLEND_DIR}/engines/{BLEND_ENGINE_OF[wildcards.blend_model]}.parquet"


def blend_model_answers(wildcards):
    """Every answer table of the model being scored."""
    return blend_answers(wildcards.blend_model)


def general_model_input(wildcards):
    """Base model (built-in) and adapter directory of the model lm_eval runs."""
    return eval_model_input(wildcards.general_model)


def general_model_params(wildcards):
    """Load settings of the model lm_eval runs."""
    return eval_model_params(wildcards.general_model)


def general_tasks_input(wildcards):
    """The custom task folder, when one is configured, else the prefetched hub tasks."""
    return (
        [GENERAL["tasks_path"]]
        if GENERAL.get("tasks_path")
        else prefetched("lm_eval_task", None)
    )


def eval_models_loaded(names):
    """Load settings (model, adapter) and the adapter's source (a training variant, an outside
    directory, a hub adapter) of eval models `names`: the comparisons say where each adapter
    came from and which were loaded with their own tokenizer, chat template or embeddings.
    """
    return {
        name: {
            **{
                k: v for k, v in eval_model_params(name).items() if k != "merge_adapter"
            },
            "source": eval_adapter(name)[0],
        }
        for name in names
    }


def compare_adapters():
    """eval_models_loaded() of every eval model with an adapter."""
    return eval_models_loaded([n for n, m in EVAL_MODELS.items() if m.get("adapter")])


def compare_pairs():
    """(model, base) pairs as plain dicts (rule params)."""
    return [
        {"model": p.model, "base": p.base, "variant": p.variant} for p in EVAL_PAIRS
    ]


def evaluate_targets():
    """Final outputs of this stage group that rule all requests."""
    if not EVAL_MODELS:
        return []
    return [
        *(f"{BLEND_DIR}/{m}/scores.parquet" for m in EVAL_MODELS),
        *(f"{GENERAL_DIR}/{m}/metrics.parquet" for m in GENERAL_MODELS),
        f"{COMPARE_DIR}/blend_scores.parquet",
        f"{COMPARE_DIR}/blend_comparison.parquet",
        f"{COMPARE_DIR}/general_scores.parquet",
        f"{COMPARE_DIR}/general_comparison.parquet",
        f"{COMPARE_DIR}/ablation.parquet",
        f"{COMPARE_DIR}/comparison.md",
        f"{COMPARE_DIR}/blend_sem_b.png",
        f"{COMPARE_DIR}/general.png",
    ]
