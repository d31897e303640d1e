# Rules of stage group 'report': what every pipeline dropped, in one table for the report.


include: "report_common.smk"


rule drops_summary:
    input:
        unpack(drop_tables),
    output:
        table=f"{REPORT_DIR}/drops.parquet",
        tsv=report(
            f"{REPORT_DIR}/drops.tsv",
            caption="../report/drops_summary.rst",
            category="Drops",
            labels={"table": "all pipelines"},
        ),
    log:
        f"{LOGS}/drops_summary/drops_summary.log",
    benchmark:
        f"{BENCH}/drops_summary/drops_summary.tsv"
    conda:
        "../envs/report.yaml"
    params:
        pipelines=lambda wildcards: list(drop_tables()),
        schema=table_schema("drops"),
    script:
        "../scripts/drops_summary.py"


# Runs after every pipeline's drop tables, i.e. after every generating job; sums the usage files
# that jobs of API models write beside their outputs (*.api-usage.json).
rule api_usage:
    input:
        unpack(drop_tables),
    output:
        tsv=report(
            f"{REPORT_DIR}/api_usage.tsv",
            caption="../report/api_usage.rst",
            category="API usage",
        ),
    log:
        f"{LOGS}/api_usage/api_usage.log",
    benchmark:
        f"{BENCH}/api_usage/api_usage.tsv"
    conda:
        "../envs/report.yaml"
    params:
        # the usage files are side files of the generating jobs, found by scanning the results
        # folder; the drop tables (input) order this rule after every generating job
        results=lambda wildcards: RESULTS,
        rules=lambda wildcards: output_regexes(),
    script:
        "../scripts/api_usage.py"


# The run's headline tables in one Markdown page (what `polyculture summary RESULTS` prints).
rule run_summary:
    input:
        unpack(summary_tables),
    output:
        report(
            f"{RESULTS}/summary.md",
            caption="../report/run_summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/run_summary/run_summary.log",
    benchmark:
        f"{BENCH}/run_summary/run_summary.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/run_summary.py"


# ---------------------------------------------------------------- release (issue 17)
# Rules that hand the trained adapters on: a model card per adapter with the run's own
# evaluation results, the adapter merged into its base model for serving, and an upload to the
# Hugging Face Hub. They are report rules: the card reads every evaluation's tables. Settings,
# helpers and release_targets() are in report_release_common.smk.
#
# The card is written into a separate release directory (release/<variant>/: a copy of the
# adapter files plus README.md), not into train/<variant>/adapter: that directory is
# train_lora's output, which the evaluations read, and rewriting it after them would make every
# evaluation out of date. push_to_hub uploads the release directory.


include: "report_release_common.smk"


rule model_card:
    input:
        unpack(model_card_input),
    output:
        release=directory(f"{RELEASE_DIR}/{{train_variant}}"),
    log:
        f"{LOGS}/model_card/{{train_variant}}.log",
    benchmark:
        f"{BENCH}/model_card/{{train_variant}}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        models=lambda wildcards: card_eval_models(wildcards.train_variant),
        base_eval_model=card_base_eval_model(),
        base_model=TRAIN["base_model"],
        base_model_path=model_path(TRAIN["base_model"]),
        license=CARD["license"],
        tags=CARD["tags"],
        datasets=card_datasets(),
        alignment_unit=AL["unit"],
        blend_dataset=card_blend_dataset(),
        run_name=config["run_name"],
        schemas={
            "blend_scores": table_schema("evaluate_blend_all_scores"),
            "general_scores": table_schema("evaluate_general_scores"),
        },
    script:
        "../scripts/model_card.py"


rule merge_adapter:
    input:
        adapter=lambda wildcards: adapter_dir(wildcards.train_variant),
        model=model_input(TRAIN["base_model"]),
    output:
        merged=directory(f"{RELEASE_DIR}/merged/{{train_variant}}"),
    log:
        f"{LOGS}/merge_adapter/{{train_variant}}.log",
    benchmark:
        f"{BENCH}/merge_adapter/{{train_variant}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: placed_threads(model_gpus(TRAIN["base_model"]))
    resources:
        **placed(model_gpus(TRAIN["base_model"])),
    params:
        base_model=train_base_model,
        dtype=TRAIN["merge_dtype"],
    script:
        "../scripts/merge_adapter.py"


rule push_to_hub:
    input:
        release=f"{RELEASE_DIR}/{{train_variant}}",
    output:
        receipt=f"{RELEASE_DIR}/pushed/{{train_variant}}.json",
    log:
        f"{LOGS}/push_to_hub/{{train_variant}}.log",
    benchmark:
        f"{BENCH}/push_to_hub/{{train_variant}}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        repo_id=push_repo_id,
        private=PUSH["private"],
        local_dir=PUSH["local_dir"],
    script:
        "../scripts/push_to_hub.py"
