# Settings and helpers of the 'alignment' rules (rules/alignment.smk), and alignment_targets().
from polyculture.workflow import (
    ConfigError,
    expand_grid,
    grid_size_message,
    resolve_mixed_formula,
)

AL = config["alignment"]
ALIGN = f"{RESULTS}/alignment"
AL_SEED = stage_seeds("alignment")


# The alignment section's cross-key checks are polyculture.config_check.alignment_problems
# (rules/common.smk runs them before any rule is defined); the specification curve's size needs
# the grid of the wvs pipeline, so it is checked here, reported the same way.
if AL["speccurve"]["enabled"]:
    _specs = expand_grid(AL["speccurve"], AL["speccurve"]["cluster_rounds"])
    if len(_specs) > AL["speccurve"]["max_specs"]:
        _problem = ConfigError(
            "alignment.speccurve.max_specs",
            f"{grid_size_message(_specs)}: more than the limit of {AL['speccurve']['max_specs']}",
        )
        print(format_problems([_problem], "polyculture: config check"), file=sys.stderr)
        raise SystemExit(1)
MIXED_FORMULA_NAME, MIXED_FORMULA = resolve_mixed_formula(AL["mixed_model"]["formula"])


def alignment_targets():
    """Final outputs of this stage group that rule all requests."""
    targets = [
        f"{ALIGN}/alignment.parquet",
        f"{ALIGN}/country_correlations.parquet",
        f"{ALIGN}/self_consistency.parquet",
        f"{ALIGN}/drops.parquet",
        f"{ALIGN}/figures/country_correlations.png",
        f"{ALIGN}/figures/self_consistency.png",
        f"{ALIGN}/figures/alignment_vs_capability.png",
        f"{ALIGN}/distribution.parquet",
        f"{ALIGN}/figures/language_breakdown",
        f"{ALIGN}/figures/mixed_model_residuals.png",
        f"{ALIGN}/figures/us_bias_residuals.png",
        f"{ALIGN}/figures/adjusted_alignment_vs_capability.png",
    ]
    for name in ("mixed_model", "us_bias"):
        targets += [
            f"{ALIGN}/{name}_coefficients.parquet",
            f"{ALIGN}/{name}_summary.txt",
            f"{ALIGN}/{name}_observations.parquet",
            f"{ALIGN}/{name}_fit.json",
            f"{ALIGN}/figures/{name}_coefficients.png",
        ]
    if AL["speccurve"]["enabled"]:
        targets += [
            f"{ALIGN}/speccurve.parquet",
            f"{ALIGN}/speccurve_summary.parquet",
            f"{ALIGN}/speccurve_summary.tsv",
            f"{ALIGN}/figures/speccurve",
        ]
    if AL["published"]:
        targets += [
            f"{ALIGN}/replication.parquet",
            f"{ALIGN}/replication.tsv",
            f"{ALIGN}/replication_summary.tsv",
        ]
    return targets


def replication_inputs(wildcards):
    """The published terms, both regressions' fits and the specification curve (when on)."""
    out = {"published": AL["published"]}
    for name in ("mixed_model", "us_bias"):
        out[f"{name}_coefficients"] = f"{ALIGN}/{name}_coefficients.parquet"
        out[f"{name}_fit"] = f"{ALIGN}/{name}_fit.json"
    if AL["speccurve"]["enabled"]:
        out["speccurve"] = f"{ALIGN}/speccurve.parquet"
    return out


def alignment_response_inputs(wildcards):
    """Scored tables of every eval model, a released response file, or its hub download."""
    src = AL["responses"]
    if src["source"] == "workflow":
        return {"scored": [f"{RESULTS}/wvs/scored/{m}.parquet" for m in EVAL_MODELS]}
    if src.get("path"):
        return {"responses": src["path"]}
    return {"responses": f"{ALIGN}/inputs/hub_responses.parquet"}


def alignment_truth_inputs(wildcards):
    """The WVS pipeline's polarity tables, or the released ground-truth files."""
    gt = AL["ground_truth"]
    if gt["source"] == "workflow":
        return {
            "polarity": f"{RESULTS}/wvs/polarity.parquet",
            "country_languages": f"{RESULTS}/wvs/country_languages.parquet",
            "human_consistency": f"{RESULTS}/wvs/human_consistency_summary.parquet",
        }
    files = {
        "country": gt.get("country_path"),
        "language": gt.get("language_path"),
        "global_": gt.get("global_path"),
        "country_languages": gt.get("country_languages_path"),
        "human_consistency": gt.get("human_consistency_path"),
    }
    return {k: v for k, v in files.items() if v}


def capability_inputs(wildcards):
    """The benchmark table, or the evaluate pipeline's lm_eval metrics of every eval model."""
    cap = AL["capability"]
    if cap["source"] == "table":
        return {"table": cap["path"]}
    return {"metrics": [f"{GENERAL_DIR}/{m}/metrics.parquet" for m in GENERAL_MODELS]}


def capability_scale():
    """Divisor of capability scores: percent tables 100, lm_eval fractions 1."""
    cap = AL["capability"]
    if cap.get("scale"):
        return cap["scale"]
    return 100.0 if cap["source"] == "table" else 1.0


ALIGN_DATA = {
    "responses": f"{ALIGN}/inputs/responses.parquet",
    "ground_truth": f"{ALIGN}/inputs/ground_truth.parquet",
    "country_languages": f"{ALIGN}/inputs/country_languages.parquet",
}


def regression_params(name):
    """Specification and fit settings of the mixed_model / us_bias rule."""
    reg = AL["regressions"]
    spec = {
        "name": name,
        "formula": MIXED_FORMULA if name == "mixed_model" else AL[name]["formula"],
        "formula_name": MIXED_FORMULA_NAME if name == "mixed_model" else "us_bias",
        "kind": "mixedlm" if name == "mixed_model" else "ols",
        "unit": AL["unit"],
        "ground_truth": AL["mixed_model"]["ground_truth"],
        "groups": "model" if name == "mixed_model" else None,
        "consistency_pairs": reg["replicate_consistency"],
        "us_group": AL["us_group"],
    }
    fit = {
        "modes": reg["modes"],
        "rounds": reg["rounds"],
        "resample_size": reg["resample_size"],
        "cluster_rounds": reg["cluster_rounds"],
    }
    return spec, fit
