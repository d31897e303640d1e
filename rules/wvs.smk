# Rules of stage group 'wvs': WVS cultural alignment, stages 1-6 (docs/design.md §2; paper §2, app. A-B).
#
# microdata → coded answers → polarity per country / language / global, human self-consistency
# topic table × templates → English prompt sample → prompts per language (translated)
# → survey responses per eval model × shard (every language in one engine; a file per language)
# → parsed summaries per model
# → judged summaries per model × judge shard → scored responses per model (+ drops tables).
# The alignment stages (rules/alignment.smk) read polarity.parquet, country_languages.parquet,
# human_consistency*.parquet and scored/{model}.parquet.
# Settings, helpers and wvs_targets() are in wvs_common.smk.


include: "wvs_common.smk"


rule wvs_polarity:
    input:
        microdata=wvs_microdata,
        topics=WVS_CFG["topics_path"],
        country_languages=WVS_CFG["country_languages_path"],
    output:
        polarity=f"{WVS}/polarity.parquet",
        answers=f"{WVS}/answers.parquet",
        summary=f"{WVS}/microdata_summary.parquet",
        country_languages=f"{WVS}/country_languages.parquet",
    log:
        f"{LOGS}/wvs_polarity/wvs_polarity.log",
    benchmark:
        f"{BENCH}/wvs_polarity/wvs_polarity.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        columns=wvs_columns(),
        language_from=WVS_CFG["language_from"],
        topics=WVS_CFG["topics"],
        zero_code=WVS_CFG["zero_code"],
        min_valid=WVS_CFG["min_valid"],
        schemas={
            "polarity": table_schema("wvs_polarity"),
            "answers": table_schema("wvs_answers"),
            "summary": table_schema("wvs_microdata_summary"),
            "country_languages": table_schema("wvs_country_languages"),
        },
    script:
        "../scripts/wvs_polarity.py"


rule wvs_human_consistency:
    input:
        answers=f"{WVS}/answers.parquet",
    output:
        pairs=f"{WVS}/human_consistency.parquet",
        summary=f"{WVS}/human_consistency_summary.parquet",
    log:
        f"{LOGS}/wvs_human_consistency/wvs_human_consistency.log",
    benchmark:
        f"{BENCH}/wvs_human_consistency/wvs_human_consistency.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        n_draws=WVS_CFG["human_consistency"]["n_draws"],
        draw_size=WVS_CFG["human_consistency"]["draw_size"],
        min_topics=WVS_CFG["human_consistency"]["min_topics"],
        seed=WVS_SEED["consistency"],
        schemas={
            "answers": table_schema("wvs_answers"),
            "pairs": table_schema("wvs_human_consistency"),
            "summary": table_schema("wvs_human_consistency_summary"),
        },
    script:
        "../scripts/wvs_human_consistency.py"


rule wvs_build_prompts:
    input:
        topics=WVS_CFG["topics_path"],
        templates=WVS_CFG["templates_path"],
        country_languages=WVS_CFG["country_languages_path"],
    output:
        prompts=f"{WVS}/prompts_en.parquet",
    log:
        f"{LOGS}/wvs_build_prompts/wvs_build_prompts.log",
    benchmark:
        f"{BENCH}/wvs_build_prompts/wvs_build_prompts.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        topics=WVS_CFG["topics"],
        n_prompts=WVS_CFG["n_prompts"],
        seed=WVS_SEED["prompts"],
        schema=table_schema("wvs_prompts_en"),
    script:
        "../scripts/wvs_build_prompts.py"


rule wvs_translate_prompts:
    input:
        prompts=f"{WVS}/prompts_en.parquet",
        model=wvs_translator_input,
    output:
        prompts=f"{WVS}/prompts/{{language}}.parquet",
        drops=f"{WVS}/drops/translate/{{language}}.parquet",
    log:
        f"{LOGS}/wvs_translate_prompts/{{language}}.log",
    benchmark:
        f"{BENCH}/wvs_translate_prompts/{{language}}.tsv"
    wildcard_constraints:
        language=WVS_LANGUAGE_RE,
    conda:
        "../envs/wvs.yaml"
    threads: placed_threads(translator_gpus())
    resources:
        **placed(translator_gpus(), network=translator_network()),
    params:
        translator=wvs_translator(),
        backend=generation_params(),
        check_language=WVS_CFG["translate"]["check_language"],
        candidates=wvs_candidates(),
        max_drop_rate=WVS_CFG["translate"]["max_drop_rate"],
        schemas={
            "in": table_schema("wvs_prompts_en"),
            "out": table_schema("wvs_prompts"),
        },
    script:
        "../scripts/wvs_translate_prompts.py"


rule wvs_survey:
    input:
        prompts=expand(f"{WVS}/prompts/{{language}}.parquet", language=WVS_LANGUAGES),
        model=lambda w: eval_model_input(w.model),
    output:
        responses=expand(
            f"{WVS}/responses/{{{{model}}}}/{{language}}/shard{{{{shard}}}}.parquet",
            language=WVS_LANGUAGES,
        ),
    log:
        f"{LOGS}/wvs_survey/{{model}}/shard{{shard}}.log",
    benchmark:
        f"{BENCH}/wvs_survey/{{model}}/shard{{shard}}.tsv"
    wildcard_constraints:
        model=WVS_LOCAL_MODEL_RE,
        shard=r"\d+",
    conda:
        "../envs/wvs.yaml"
    threads: placed_threads(lambda w: eval_model_gpus(w.model))
    resources:
        **placed(lambda w: eval_model_gpus(w.model)),
    params:
        spec=lambda w: EVAL_MODELS[w.model]["model"],
        model=lambda w: eval_model_params(w.model),
        family=lambda w: wvs_family(w.model),
        backend=generation_params(eval_model=lambda w: w.model),
        languages=WVS_LANGUAGES,
        sampling=WVS_CFG["sampling"],
        stop=WVS_CFG["stop"],
        samples_per_prompt=WVS_CFG["samples_per_prompt"],
        n_shards=lambda w: len(WVS_SHARDS[w.model]),
        seed=WVS_SEED["survey"],
        cache_dir=ANSWER_CACHE,
        schemas={
            "in": table_schema("wvs_prompts"),
            "out": table_schema("wvs_responses"),
        },
    script:
        "../scripts/wvs_survey.py"


use rule wvs_survey as wvs_survey_api with:
    wildcard_constraints:
        model=WVS_API_MODEL_RE,
        shard=r"\d+",
    threads: 1
    resources:
        **placed(0, network=True),


rule wvs_parse:
    input:
        responses=wvs_survey_outputs,
    output:
        parsed=f"{WVS}/parsed/{{model}}.parquet",
        drops=f"{WVS}/drops/parse/{{model}}.parquet",
    log:
        f"{LOGS}/wvs_parse/{{model}}.log",
    benchmark:
        f"{BENCH}/wvs_parse/{{model}}.tsv"
    wildcard_constraints:
        model=WVS_MODEL_RE,
    conda:
        "../envs/wvs.yaml"
    params:
        min_items=WVS_CFG["parse"]["min_items"],
        accept_bullets=WVS_CFG["parse"]["accept_bullets"],
        check_language=WVS_CFG["parse"]["check_language"],
        candidates=wvs_candidates(),
        max_drop_rate=WVS_CFG["parse"]["max_drop_rate"],
        schemas={"in": table_schema("wvs_responses"), "out": table_schema("wvs_parsed")},
    script:
        "../scripts/wvs_parse.py"


rule wvs_judge:
    input:
        parsed=f"{WVS}/parsed/{{model}}.parquet",
        topics=WVS_CFG["topics_path"],
        judge=model_input(WVS_CFG["judge"]),
    output:
        judged=f"{WVS}/judged/{{model}}/shard{{shard}}.parquet",
    log:
        f"{LOGS}/wvs_judge/{{model}}/shard{{shard}}.log",
    benchmark:
        f"{BENCH}/wvs_judge/{{model}}/shard{{shard}}.tsv"
    wildcard_constraints:
        model=WVS_MODEL_RE,
        shard=r"\d+",
    conda:
        "../envs/wvs.yaml"
    threads: placed_threads(model_gpus(WVS_CFG["judge"]))
    resources:
        **placed(model_gpus(WVS_CFG["judge"]), network=model_network(WVS_CFG["judge"])),
    params:
        judge=wvs_judge_path,
        mode=WVS_CFG["judge_mode"],
        backend=generation_params(WVS_CFG["judge"]),
        sampling=WVS_CFG["judge_sampling"],
        n_shards=lambda w: len(WVS_JUDGE_SHARDS[w.model]),
        seed=WVS_SEED["judge"],
        schemas={"in": table_schema("wvs_parsed"), "out": table_schema("wvs_judged")},
    script:
        "../scripts/wvs_judge.py"


rule wvs_score:
    input:
        judged=wvs_judge_outputs,
    output:
        scored=f"{WVS}/scored/{{model}}.parquet",
        drops=f"{WVS}/drops/judge/{{model}}.parquet",
    log:
        f"{LOGS}/wvs_score/{{model}}.log",
    benchmark:
        f"{BENCH}/wvs_score/{{model}}.tsv"
    wildcard_constraints:
        model=WVS_MODEL_RE,
    conda:
        "../envs/wvs.yaml"
    params:
        max_drop_rate=WVS_CFG["judge_max_drop_rate"],
        schemas={
            "in": table_schema("wvs_judged"),
            "out": table_schema("wvs_scored"),
            "drops": table_schema("wvs_drops"),
        },
    script:
        "../scripts/wvs_score.py"


rule wvs_report:
    input:
        **wvs_population_inputs(),
        topics=WVS_CFG["topics_path"],
        responses=[f for m in WVS_MODELS for f in wvs_survey_files(m)],
        parsed=expand(f"{WVS}/parsed/{{model}}.parquet", model=WVS_MODELS),
        scored=expand(f"{WVS}/scored/{{model}}.parquet", model=WVS_MODELS),
        drops=[
            *expand(
                f"{WVS}/drops/translate/{{language}}.parquet", language=WVS_LANGUAGES
            ),
            *expand(f"{WVS}/drops/parse/{{model}}.parquet", model=WVS_MODELS),
            *expand(f"{WVS}/drops/judge/{{model}}.parquet", model=WVS_MODELS),
        ],
    output:
        **wvs_population_reports(),
        responses=report(
            f"{WVS}/report/responses.tsv",
            caption="../report/wvs_responses.rst",
            category="WVS",
            subcategory="Model responses",
        ),
        drops=report(
            f"{WVS}/report/drops.tsv",
            caption="../report/wvs_drops.rst",
            category="Drops",
        ),
    log:
        f"{LOGS}/wvs_report/wvs_report.log",
    benchmark:
        f"{BENCH}/wvs_report/wvs_report.tsv"
    conda:
        "../envs/wvs.yaml"
    params:
        languages=WVS_LANGUAGES,
    script:
        "../scripts/wvs_report.py"
