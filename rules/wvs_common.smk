# Settings and helpers of the 'wvs' rules (rules/wvs.smk), and wvs_targets().
import re
from pathlib import Path

from polyculture.workflow import ConfigError, wvs_population_needed

WVS = f"{RESULTS}/wvs"
WVS_CFG = config["wvs"]
WVS_LANGUAGES = WVS_CFG["languages"]
WVS_MODELS = list(EVAL_MODELS)
#: Survey and judge shards per eval model (a number, or `auto`: rules/common.smk stage_shards).
WVS_SHARDS = {
    m: [str(i) for i in range(stage_shards("wvs.shards", m))] for m in WVS_MODELS
}
WVS_JUDGE_SHARDS = {
    m: [str(i) for i in range(stage_shards("wvs.judge_shards", m))] for m in WVS_MODELS
}
WVS_SEED = stage_seeds("wvs")
WVS_MODEL_RE = "|".join(re.escape(m) for m in WVS_MODELS) or "(?!)"
# The survey of a local model (wvs_survey) and of an API model (wvs_survey_api: a rule of its
# own, so that where network jobs run on the submit host it is a localrule; Snakemake decides
# localrules per rule, not per job).
WVS_API_MODELS = [m for m in WVS_MODELS if eval_model_network(m)]
WVS_LOCAL_MODEL_RE = (
    "|".join(re.escape(m) for m in WVS_MODELS if m not in WVS_API_MODELS) or "(?!)"
)
WVS_API_MODEL_RE = "|".join(re.escape(m) for m in WVS_API_MODELS) or "(?!)"
WVS_LANGUAGE_RE = "|".join(WVS_LANGUAGES)
#: Whether the population stages (polarity, human self-consistency) run: not where the microdata
#: are absent and the alignment's ground truth is given as files (the config check asks for one
#: of the two).
WVS_POPULATION = wvs_population_needed(config)


def wvs_microdata(wildcards):
    """The microdata file (checked when a rule needs it, so other pipelines run without it)."""
    path = WVS_CFG.get("microdata_path")
    if not path:
        raise ConfigError(
            "wvs.microdata_path",
            "the WVS pipeline needs respondent-level microdata (e.g. the joint EVS/WVS file); "
            "set it in the config or with --config, or switch the pipeline off (pipelines.wvs: false)",
        )
    return path


def wvs_targets():
    """Final outputs of this stage group that rule all requests."""
    population = [
        f"{WVS}/polarity.parquet",
        f"{WVS}/country_languages.parquet",
        f"{WVS}/human_consistency.parquet",
        f"{WVS}/human_consistency_summary.parquet",
    ]
    return [
        *(population if WVS_POPULATION else []),
        *(f"{WVS}/scored/{m}.parquet" for m in WVS_MODELS),
        *rules.wvs_report.output,
    ]


def wvs_population_inputs():
    """wvs_report's population tables, where the population stages run."""
    if not WVS_POPULATION:
        return {}
    return {
        "polarity": f"{WVS}/polarity.parquet",
        "consistency": f"{WVS}/human_consistency_summary.parquet",
    }


def wvs_population_reports():
    """wvs_report's population outputs (report entries), where the population stages run."""
    if not WVS_POPULATION:
        return {}
    return {
        "polarity": report(
            f"{WVS}/report/polarity.tsv",
            caption="../report/wvs_polarity.rst",
            category="WVS",
            subcategory="Survey populations",
        ),
        "consistency": report(
            f"{WVS}/report/human_consistency.tsv",
            caption="../report/wvs_human_consistency.rst",
            category="WVS",
            subcategory="Survey populations",
        ),
    }


def wvs_survey_files(model):
    """Every survey output of eval model `model` (each language's shards)."""
    return [
        f"{WVS}/responses/{model}/{language}/shard{shard}.parquet"
        for language in WVS_LANGUAGES
        for shard in WVS_SHARDS[model]
    ]


def wvs_survey_outputs(wildcards):
    """Every survey output of the job's eval model."""
    return wvs_survey_files(wildcards.model)


def wvs_judge_outputs(wildcards):
    """Every judge shard of one eval model."""
    return [
        f"{WVS}/judged/{wildcards.model}/shard{shard}.parquet"
        for shard in WVS_JUDGE_SHARDS[wildcards.model]
    ]


def wvs_family(model):
    """Family of an eval model (a fixed effect of the mixed model); default: its name."""
    return EVAL_MODELS[model].get("family") or model


def wvs_translator():
    """Translator settings with the model spec resolved to a loadable path."""
    tr = dict(config["translator"])
    if tr.get("model"):
        tr["model"] = model_path(tr["model"])
    if WVS_CFG["translate"]["max_new_tokens"]:
        tr["max_new_tokens"] = WVS_CFG["translate"]["max_new_tokens"]
    return tr


def wvs_translator_input(wildcards):
    """The translator's built-in model where the language needs translating."""
    tr = config["translator"]
    if tr.get("kind") == "memory" and wildcards.language != "en":
        return [tr["path"]]
    if (
        wildcards.language == "en"
        or tr.get("kind") not in ("llm", "nllb")
        or not tr.get("model")
    ):
        return []
    return model_input(tr["model"])


def wvs_candidates():
    """Candidate languages of language identification."""
    return sorted(set(WVS_LANGUAGES) | set(WVS_CFG["parse"]["extra_languages"]))


def wvs_columns():
    """Microdata column names."""
    return {
        "country": WVS_CFG["country_column"],
        "language": WVS_CFG["language_column"],
        "weights": list(WVS_CFG["weight_columns"]),
    }


def wvs_judge_path(wildcards, input):
    """Loadable path of the judge: its built directory (an input) for built-ins, else the spec."""
    if model_spec(WVS_CFG["judge"]).kind != "builtin":
        return model_path(WVS_CFG["judge"])
    built = input.judge
    return built if isinstance(built, str) else built[0]
