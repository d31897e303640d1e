# Rules of stage group 'alignment': the WVS alignment analysis, stages 7-10 (DESIGN.md §2;
# paper §2, §3.2-3.3, app. F).
#
# [hub download] → alignment_inputs (responses of the workflow's models or released judged
# responses; workflow or released ground truth) → alignment (Spearman per model × language ×
# level × group × unit, bootstrap CIs), self_consistency (no self-pairs, human band),
# alignment_country_heatmap; alignment_capability → mixed_model (RQ1) and us_bias (RQ2), each in
# the released replicate mode and the cluster-bootstrap mode → figures → speccurve (issue 9).
from polyculture.errors import ConfigError
from polyculture.wvs.speccurve import expand_grid, grid_size_message

# validate() does not fill defaults inside $ref'd section schemas: validate the section itself
validate(config["alignment"], "../schemas/config-alignment.schema.yaml", set_default=True)
AL = config["alignment"]
ALIGN = f"{RESULTS}/alignment"
AL_SEED = {
    "alignment": SEED + 7100,
    "consistency": SEED + 7200,
    "mixed_model": SEED + 7300,
    "us_bias": SEED + 7400,
    "speccurve": SEED + 7500,
}


def _alignment_checks():
    """Config checks that JSON Schema cannot express; they fail before any job."""
    src = AL["responses"]
    if src["source"] == "file" and not src.get("path") and not src.get("hub_id"):
        raise ConfigError("alignment.responses", "source 'file' needs a path or a hub_id")
    gt = AL["ground_truth"]
    if gt["source"] == "file":
        if not any(gt.get(k) for k in ("country_path", "language_path", "global_path")):
            raise ConfigError(
                "alignment.ground_truth",
                "source 'file' needs at least one of country_path, language_path, global_path",
            )
        if not gt.get("country_languages_path"):
            raise ConfigError(
                "alignment.ground_truth.country_languages_path",
                "source 'file' needs the country → language table (local countries of each language)",
            )
    merged_wanted = AL["mixed_model"]["ground_truth"] == "merged" or (
        AL["speccurve"]["enabled"] and "merged" in AL["speccurve"]["ground_truth"]
    )
    if merged_wanted and (src["source"] != "file" or not gt["use_merged"]):
        raise ConfigError(
            "alignment.mixed_model.ground_truth",
            "ground truth 'merged' exists only in released response files (responses.source: file, "
            "ground_truth.use_merged: true)",
        )
    cap = AL["capability"]
    if cap["source"] == "table" and not os.path.exists(cap["path"]):
        raise ConfigError("alignment.capability.path", f"'{cap['path']}' does not exist")
    if AL["speccurve"]["enabled"]:
        specs = expand_grid(AL["speccurve"], AL["speccurve"]["cluster_rounds"])
        if len(specs) > AL["speccurve"]["max_specs"]:
            raise ConfigError(
                "alignment.speccurve.max_specs",
                f"{grid_size_message(specs)}: more than the limit of {AL['speccurve']['max_specs']}",
            )


_alignment_checks()


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
    return targets


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
    return {"metrics": [f"{GENERAL_DIR}/{m}/metrics.parquet" for m in EVAL_MODELS]}


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
        "formula": AL[name]["formula"],
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


rule alignment_fetch_responses:
    output:
        responses=f"{ALIGN}/inputs/hub_responses.parquet",
    params:
        hub_id=AL["responses"]["hub_id"],
        revision=AL["responses"]["hub_revision"],
    log:
        f"{LOGS}/alignment_fetch_responses/alignment_fetch_responses.log",
    benchmark:
        f"{BENCH}/alignment_fetch_responses/alignment_fetch_responses.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_fetch.py"


rule alignment_inputs:
    input:
        unpack(alignment_response_inputs),
        unpack(alignment_truth_inputs),
    output:
        responses=ALIGN_DATA["responses"],
        ground_truth=ALIGN_DATA["ground_truth"],
        country_languages=ALIGN_DATA["country_languages"],
        human_consistency=f"{ALIGN}/inputs/human_consistency.parquet",
        cells=f"{ALIGN}/inputs/cells.parquet",
        drops=f"{ALIGN}/drops.parquet",
    params:
        responses_source=AL["responses"]["source"],
        template_type=AL["responses"]["template_type"],
        ground_truth_source=AL["ground_truth"]["source"],
        use_merged=AL["ground_truth"]["use_merged"],
    log:
        f"{LOGS}/alignment_inputs/alignment_inputs.log",
    benchmark:
        f"{BENCH}/alignment_inputs/alignment_inputs.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_inputs.py"


rule alignment_capability:
    input:
        unpack(capability_inputs),
    output:
        capability=f"{ALIGN}/inputs/capability.parquet",
    params:
        source=AL["capability"]["source"],
        scale=capability_scale(),
        model_aliases=AL["capability"]["model_aliases"],
        exclude_benchmarks=AL["capability"]["exclude_benchmarks"],
        benchmarks=AL["capability"]["benchmarks"],
    log:
        f"{LOGS}/alignment_capability/alignment_capability.log",
    benchmark:
        f"{BENCH}/alignment_capability/alignment_capability.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_capability.py"


rule alignment:
    input:
        **ALIGN_DATA,
    output:
        alignment=f"{ALIGN}/alignment.parquet",
    params:
        bootstrap=AL["bootstrap"],
        units=AL["units"],
        seed=AL_SEED["alignment"],
    log:
        f"{LOGS}/alignment/alignment.log",
    benchmark:
        f"{BENCH}/alignment/alignment.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_scores.py"


rule alignment_country_heatmap:
    input:
        ground_truth=ALIGN_DATA["ground_truth"],
    output:
        table=f"{ALIGN}/country_correlations.parquet",
        figure=report(
            f"{ALIGN}/figures/country_correlations.png",
            caption="../report/alignment_country_correlations.rst",
            category="WVS",
            subcategory="Survey populations",
        ),
    params:
        levels=["country", "global"],
    log:
        f"{LOGS}/alignment_country_heatmap/alignment_country_heatmap.log",
    benchmark:
        f"{BENCH}/alignment_country_heatmap/alignment_country_heatmap.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_heatmap.py"


rule self_consistency:
    input:
        **ALIGN_DATA,
        human_consistency=f"{ALIGN}/inputs/human_consistency.parquet",
    output:
        table=f"{ALIGN}/self_consistency.parquet",
        figure=report(
            f"{ALIGN}/figures/self_consistency.png",
            caption="../report/alignment_self_consistency.rst",
            category="WVS",
            subcategory="Self-consistency",
        ),
    params:
        rounds=AL["consistency"]["rounds"],
        released_rounds=AL["consistency"]["released_rounds"],
        alpha=AL["bootstrap"]["alpha"],
        seed=AL_SEED["consistency"],
    log:
        f"{LOGS}/self_consistency/self_consistency.log",
    benchmark:
        f"{BENCH}/self_consistency/self_consistency.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_consistency.py"


rule mixed_model:
    input:
        **ALIGN_DATA,
        capability=f"{ALIGN}/inputs/capability.parquet",
    output:
        coefficients=f"{ALIGN}/mixed_model_coefficients.parquet",
        observations=f"{ALIGN}/mixed_model_observations.parquet",
        fit=f"{ALIGN}/mixed_model_fit.json",
        summary=report(
            f"{ALIGN}/mixed_model_summary.txt",
            caption="../report/alignment_mixed_model_summary.rst",
            category="WVS",
            subcategory="Regressions",
        ),
        figure=report(
            f"{ALIGN}/figures/mixed_model_coefficients.png",
            caption="../report/alignment_mixed_model.rst",
            category="WVS",
            subcategory="Regressions",
        ),
    params:
        spec=regression_params("mixed_model")[0],
        fit=regression_params("mixed_model")[1],
        seed=AL_SEED["mixed_model"],
        figure={
            "title": "Mixed model (RQ1): fixed effects in both observation modes",
            "terms": None,
            "panel_by": None,
        },
    log:
        f"{LOGS}/mixed_model/mixed_model.log",
    benchmark:
        f"{BENCH}/mixed_model/mixed_model.tsv"
    threads: 1
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_regression.py"


rule us_bias:
    input:
        **ALIGN_DATA,
    output:
        coefficients=f"{ALIGN}/us_bias_coefficients.parquet",
        observations=f"{ALIGN}/us_bias_observations.parquet",
        fit=f"{ALIGN}/us_bias_fit.json",
        summary=report(
            f"{ALIGN}/us_bias_summary.txt",
            caption="../report/alignment_us_bias_summary.rst",
            category="WVS",
            subcategory="Regressions",
        ),
        figure=report(
            f"{ALIGN}/figures/us_bias_coefficients.png",
            caption="../report/alignment_us_bias.rst",
            category="WVS",
            subcategory="Regressions",
        ),
    params:
        spec=regression_params("us_bias")[0],
        fit=regression_params("us_bias")[1],
        seed=AL_SEED["us_bias"],
        figure={
            "title": "US-centric bias (RQ2): US × model × language effects",
            "terms": r"^us\[T\.True\]:model",
            "panel_by": "language",
        },
    log:
        f"{LOGS}/us_bias/us_bias.log",
    benchmark:
        f"{BENCH}/us_bias/us_bias.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_regression.py"


rule alignment_capability_figure:
    input:
        alignment=f"{ALIGN}/alignment.parquet",
        capability=f"{ALIGN}/inputs/capability.parquet",
        coefficients=f"{ALIGN}/mixed_model_coefficients.parquet",
    output:
        figure=report(
            f"{ALIGN}/figures/alignment_vs_capability.png",
            caption="../report/alignment_vs_capability.rst",
            category="WVS",
            subcategory="Regressions",
        ),
    params:
        unit=AL["unit"],
        level="language" if AL["mixed_model"]["ground_truth"] == "country" else AL["mixed_model"]["ground_truth"],
    log:
        f"{LOGS}/alignment_capability_figure/alignment_capability_figure.log",
    benchmark:
        f"{BENCH}/alignment_capability_figure/alignment_capability_figure.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_capability_figure.py"


rule speccurve:
    input:
        **ALIGN_DATA,
        capability=f"{ALIGN}/inputs/capability.parquet",
    output:
        table=f"{ALIGN}/speccurve.parquet",
        summary=f"{ALIGN}/speccurve_summary.parquet",
        summary_tsv=report(
            f"{ALIGN}/speccurve_summary.tsv",
            caption="../report/alignment_speccurve_summary.rst",
            category="WVS",
            subcategory="Robustness",
        ),
        figures=report(
            directory(f"{ALIGN}/figures/speccurve"),
            patterns=["{name}.png"],
            caption="../report/alignment_speccurve.rst",
            category="WVS",
            subcategory="Robustness",
        ),
    params:
        grid=AL["speccurve"],
        defaults={
            "mixed_formula": AL["mixed_model"]["formula"],
            "us_formula": AL["us_bias"]["formula"],
            "ground_truth": AL["mixed_model"]["ground_truth"],
            "unit": AL["unit"],
            "observation": "cluster_bootstrap",
            "mixed_kind": "mixedlm",
            "consistency_pairs": AL["regressions"]["replicate_consistency"],
            "us_group": AL["us_group"],
        },
        seed=AL_SEED["speccurve"],
    log:
        f"{LOGS}/speccurve/speccurve.log",
    benchmark:
        f"{BENCH}/speccurve/speccurve.tsv"
    conda:
        "../envs/wvs.yaml"
    script:
        "../scripts/alignment_speccurve.py"
