# Rules of stage group 'alignment': the WVS alignment analysis, stages 7-10 (docs/design.md §2;
# paper §2, §3.2-3.3, app. F).
#
# [hub download] → alignment_inputs (responses of the workflow's models or released judged
# responses; workflow or released ground truth) → alignment (Spearman per model × language ×
# level × group × unit, bootstrap CIs), self_consistency (no self-pairs, human band),
# alignment_country_heatmap; alignment_capability → mixed_model (RQ1) and us_bias (RQ2), each in
# the released replicate mode and the cluster-bootstrap mode → figures → speccurve (issue 9).
# Settings, helpers and alignment_targets() are in alignment_common.smk.


include: "alignment_common.smk"


rule alignment_fetch_responses:
    output:
        responses=f"{ALIGN}/inputs/hub_responses.parquet",
    log:
        f"{LOGS}/alignment_fetch_responses/alignment_fetch_responses.log",
    benchmark:
        f"{BENCH}/alignment_fetch_responses/alignment_fetch_responses.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        hub_id=AL["responses"]["hub_id"],
        revision=AL["responses"]["hub_revision"],
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
    log:
        f"{LOGS}/alignment_inputs/alignment_inputs.log",
    benchmark:
        f"{BENCH}/alignment_inputs/alignment_inputs.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        responses_source=AL["responses"]["source"],
        template_type=AL["responses"]["template_type"],
        ground_truth_source=AL["ground_truth"]["source"],
        use_merged=AL["ground_truth"]["use_merged"],
        countries=AL["countries"],
    script:
        "../scripts/alignment_inputs.py"


rule alignment_capability:
    input:
        unpack(capability_inputs),
    output:
        capability=f"{ALIGN}/inputs/capability.parquet",
    log:
        f"{LOGS}/alignment_capability/alignment_capability.log",
    benchmark:
        f"{BENCH}/alignment_capability/alignment_capability.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        source=AL["capability"]["source"],
        scale=capability_scale(),
        model_aliases=AL["capability"]["model_aliases"],
        exclude_benchmarks=AL["capability"]["exclude_benchmarks"],
        benchmarks=AL["capability"]["benchmarks"],
    script:
        "../scripts/alignment_capability.py"


rule alignment:
    input:
        **ALIGN_DATA,
    output:
        alignment=f"{ALIGN}/alignment.parquet",
        distribution=f"{ALIGN}/distribution.parquet",
        distribution_tsv=report(
            f"{ALIGN}/distribution.tsv",
            caption="../report/alignment_distribution.rst",
            category="WVS",
            subcategory="Alignment",
        ),
    log:
        f"{LOGS}/alignment/alignment.log",
    benchmark:
        f"{BENCH}/alignment/alignment.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        bootstrap=AL["bootstrap"],
        units=AL["units"],
        min_responses=AL["min_responses"],
        distribution=AL["distribution"],
        seed=AL_SEED["alignment"],
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
    log:
        f"{LOGS}/alignment_country_heatmap/alignment_country_heatmap.log",
    benchmark:
        f"{BENCH}/alignment_country_heatmap/alignment_country_heatmap.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        levels=["country", "global"],
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
    log:
        f"{LOGS}/self_consistency/self_consistency.log",
    benchmark:
        f"{BENCH}/self_consistency/self_consistency.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        rounds=AL["consistency"]["rounds"],
        released_rounds=AL["consistency"]["released_rounds"],
        alpha=AL["bootstrap"]["alpha"],
        seed=AL_SEED["consistency"],
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
    log:
        f"{LOGS}/mixed_model/mixed_model.log",
    benchmark:
        f"{BENCH}/mixed_model/mixed_model.tsv"
    conda:
        "../envs/wvs.yaml"
    threads: 1
    params:
        spec=regression_params("mixed_model")[0],
        fit=regression_params("mixed_model")[1],
        seed=AL_SEED["mixed_model"],
        figure={
            "title": "Mixed model (RQ1): fixed effects in both observation modes",
            "terms": None,
            "panel_by": None,
            "label": "term",
        },
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
    log:
        f"{LOGS}/us_bias/us_bias.log",
    benchmark:
        f"{BENCH}/us_bias/us_bias.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        spec=regression_params("us_bias")[0],
        fit=regression_params("us_bias")[1],
        seed=AL_SEED["us_bias"],
        figure={
            "title": "US-centric bias (RQ2): US × model × language effects",
            "terms": r"^us\[T\.True\]:model",
            "panel_by": "language",
            "label": "model",
        },
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
    log:
        f"{LOGS}/alignment_capability_figure/alignment_capability_figure.log",
    benchmark:
        f"{BENCH}/alignment_capability_figure/alignment_capability_figure.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        unit=AL["unit"],
        level=(
            "language"
            if AL["mixed_model"]["ground_truth"] == "country"
            else AL["mixed_model"]["ground_truth"]
        ),
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
    log:
        f"{LOGS}/speccurve/speccurve.log",
    benchmark:
        f"{BENCH}/speccurve/speccurve.tsv"
    conda:
        "../envs/wvs.yaml"
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
    script:
        "../scripts/alignment_speccurve.py"


rule replication_report:
    input:
        unpack(replication_inputs),
    output:
        table=f"{ALIGN}/replication.parquet",
        table_tsv=report(
            f"{ALIGN}/replication.tsv",
            caption="../report/alignment_replication.rst",
            category="WVS",
            subcategory="Replication",
        ),
        summary=report(
            f"{ALIGN}/replication_summary.tsv",
            caption="../report/alignment_replication_summary.rst",
            category="WVS",
            subcategory="Replication",
        ),
    log:
        f"{LOGS}/replication_report/replication_report.log",
    benchmark:
        f"{BENCH}/replication_report/replication_report.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        alpha=AL["bootstrap"]["alpha"],
    script:
        "../scripts/alignment_replication.py"


rule alignment_paper_figures:
    input:
        alignment=f"{ALIGN}/alignment.parquet",
        country_languages=ALIGN_DATA["country_languages"],
        capability=f"{ALIGN}/inputs/capability.parquet",
        mixed_observations=f"{ALIGN}/mixed_model_observations.parquet",
        us_observations=f"{ALIGN}/us_bias_observations.parquet",
    output:
        breakdown=report(
            directory(f"{ALIGN}/figures/language_breakdown"),
            patterns=["{name}.png"],
            caption="../report/alignment_language_breakdown.rst",
            category="WVS",
            subcategory="Alignment",
        ),
        mixed_residuals=report(
            f"{ALIGN}/figures/mixed_model_residuals.png",
            caption="../report/alignment_residuals.rst",
            category="WVS",
            subcategory="Regressions",
        ),
        us_residuals=report(
            f"{ALIGN}/figures/us_bias_residuals.png",
            caption="../report/alignment_residuals.rst",
            category="WVS",
            subcategory="Regressions",
        ),
        adjusted=f"{ALIGN}/adjusted_alignment.parquet",
        adjusted_figure=report(
            f"{ALIGN}/figures/adjusted_alignment_vs_capability.png",
            caption="../report/alignment_adjusted.rst",
            category="WVS",
            subcategory="Regressions",
        ),
    log:
        f"{LOGS}/alignment_paper_figures/alignment_paper_figures.log",
    benchmark:
        f"{BENCH}/alignment_paper_figures/alignment_paper_figures.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        unit=AL["unit"],
        us_group=AL["us_group"],
        rounds=100,  # the released calculate_adjusted_alignments' N_ITERATIONS
        seed=AL_SEED["mixed_model"] + 1,
    script:
        "../scripts/alignment_paper_figures.py"
