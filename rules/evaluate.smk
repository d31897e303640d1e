# Rules of stage group 'evaluate': every eval model on BLEnD short-answer questions (SEM-B /
# SEM-W, English and local language) and general benchmarks (lm-evaluation-harness), then
# each model against its baseline with paired bootstrap tests (docs/design.md §1, issue 4).
# API models answer BLEnD through the chat format; lm_eval is not planned for them (issue 27).
#
# [hub download] → blend_generate (one engine per base model: the base and its adapters, every
# country × language × template, one call per model × country, through the answer cache)
# → blend_answers (model × country: that model's rows, as one table each) → blend_score (model)
# (through the blend benchmark folder, polyculture.evals.blend)
# lm_eval (model) → compare_models (all models: tables, Markdown, figures for the report).
# Settings, helpers and evaluate_targets() are in evaluate_common.smk.


include: "evaluate_common.smk"


rule blend_fetch:
    output:
        data=directory(f"{BLEND_DIR}/data"),
    log:
        f"{LOGS}/blend_fetch/blend_fetch.log",
    benchmark:
        f"{BENCH}/blend_fetch/blend_fetch.tsv"
    conda:
        "../envs/evaluate.yaml"
    params:
        dataset=BLEND["hub_dataset"],
        revision=BLEND["hub_revision"],
        countries=BLEND_COUNTRIES,
    script:
        "../scripts/blend_fetch.py"


rule blend_generate:
    input:
        data=blend_all_input,
        model=blend_engine_input,
    output:
        answers=f"{BLEND_DIR}/engines/{{blend_engine}}.parquet",
    log:
        f"{LOGS}/blend_generate/{{blend_engine}}.log",
    benchmark:
        f"{BENCH}/blend_generate/{{blend_engine}}.tsv"
    wildcard_constraints:
        blend_engine=BLEND_ENGINE_RE,
    conda:
        "../envs/evaluate.yaml"
    threads: placed_threads(lambda w: eval_model_gpus(w.blend_engine))
    resources:
        **placed(
            lambda w: eval_model_gpus(w.blend_engine),
            network=lambda w: eval_model_network(w.blend_engine),
        ),
    params:
        data_dir=BLEND_DATA,
        spec=lambda w: EVAL_MODELS[w.blend_engine]["model"],
        model=lambda w: eval_model_params(w.blend_engine)["model"],
        members=blend_engine_members,
        runs=blend_runs(),
        backend=generation_params(eval_model=lambda w: w.blend_engine),
        sampling=BLEND["sampling"],
        prompt_format=BLEND["prompt_format"],
        seed=EVAL_SEED["blend"],
        max_questions=BLEND["max_questions"],
        cache_dir=ANSWER_CACHE,
        schema=table_schema("evaluate_blend_engine_answers"),
    script:
        "../scripts/blend_generate.py"


rule blend_answers:
    input:
        answers=blend_engine_answers,
    output:
        answers=f"{BLEND_DIR}/{{blend_model}}/answers/{{blend_country}}.parquet",
        drops=f"{BLEND_DIR}/{{blend_model}}/drops/{{blend_country}}.parquet",
    log:
        f"{LOGS}/blend_answers/{{blend_model}}/{{blend_country}}.log",
    benchmark:
        f"{BENCH}/blend_answers/{{blend_model}}/{{blend_country}}.tsv"
    wildcard_constraints:
        blend_model=EVAL_MODEL_RE,
        blend_country=BLEND_COUNTRY_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        max_drop_rate=BLEND["max_drop_rate"],
        schema=table_schema("evaluate_blend_responses"),
    script:
        "../scripts/blend_answers.py"


rule blend_score:
    input:
        data=blend_all_input,
        answers=blend_model_answers,
    output:
        scores=f"{BLEND_DIR}/{{blend_model}}/scores.parquet",
        per_question=f"{BLEND_DIR}/{{blend_model}}/per_question.parquet",
    log:
        f"{LOGS}/blend_score/{{blend_model}}.log",
    benchmark:
        f"{BENCH}/blend_score/{{blend_model}}.tsv"
    wildcard_constraints:
        blend_model=EVAL_MODEL_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        settings=BLEND_BENCHMARK.settings,
        schemas={
            "answers": table_schema("evaluate_blend_responses"),
            "scores": table_schema("evaluate_blend_scores"),
            "per_question": table_schema("evaluate_blend_per_question"),
        },
    script:
        "../scripts/blend_score.py"


rule lm_eval:
    input:
        tasks=general_tasks_input,
        model=general_model_input,
    output:
        metrics=f"{GENERAL_DIR}/{{general_model}}/metrics.parquet",
        item_scores=f"{GENERAL_DIR}/{{general_model}}/items.parquet",
        samples=f"{GENERAL_DIR}/{{general_model}}/samples.jsonl",
        results=f"{GENERAL_DIR}/{{general_model}}/results.json",
    log:
        f"{LOGS}/lm_eval/{{general_model}}.log",
    benchmark:
        f"{BENCH}/lm_eval/{{general_model}}.tsv"
    wildcard_constraints:
        general_model=GENERAL_MODEL_RE,
    conda:
        "../envs/evaluate.yaml"
    threads: placed_threads(lambda w: eval_model_gpus(w.general_model))
    resources:
        **placed(lambda w: eval_model_gpus(w.general_model)),
    params:
        model=general_model_params,
        backend=generation_params(eval_model=lambda w: w.general_model),
        tasks=GENERAL["tasks"],
        prompt_defaults={
            k: GENERAL[k]
            for k in (
                "apply_chat_template",
                "fewshot_as_multiturn",
                "system_instruction",
            )
        },
        tasks_path=GENERAL.get("tasks_path"),
        num_fewshot=GENERAL["num_fewshot"],
        limit=GENERAL["limit"],
        batch_size=GENERAL["batch_size"],
        seed=EVAL_SEED["general"],
        schemas={
            "items": table_schema("evaluate_general_items"),
            "metrics": table_schema("evaluate_general_metrics"),
        },
    script:
        "../scripts/lm_eval.py"


rule compare_models:
    input:
        per_question=expand(
            f"{BLEND_DIR}/{{m}}/per_question.parquet", m=list(EVAL_MODELS)
        ),
        item_scores=expand(f"{GENERAL_DIR}/{{m}}/items.parquet", m=GENERAL_MODELS),
    output:
        blend_scores=f"{COMPARE_DIR}/blend_scores.parquet",
        blend_comparison=f"{COMPARE_DIR}/blend_comparison.parquet",
        general_scores=f"{COMPARE_DIR}/general_scores.parquet",
        general_comparison=f"{COMPARE_DIR}/general_comparison.parquet",
        ablation=f"{COMPARE_DIR}/ablation.parquet",
        markdown=report(
            f"{COMPARE_DIR}/comparison.md",
            caption="../report/evaluate_comparison.rst",
            category="Evaluation",
            labels={"table": "model comparison"},
        ),
        blend_figure=report(
            f"{COMPARE_DIR}/blend_sem_b.png",
            caption="../report/evaluate_blend.rst",
            category="Evaluation",
            labels={"figure": "BLEnD SEM-B per country"},
        ),
        general_figure=report(
            f"{COMPARE_DIR}/general.png",
            caption="../report/evaluate_general.rst",
            category="Evaluation",
            labels={"figure": "general benchmarks"},
        ),
    log:
        f"{LOGS}/compare_models/compare_models.log",
    benchmark:
        f"{BENCH}/compare_models/compare_models.tsv"
    conda:
        "../envs/evaluate.yaml"
    params:
        pairs=compare_pairs(),
        notes=EVAL_PAIR_NOTES,
        adapters=compare_adapters(),
        general_models=GENERAL_MODELS,
        tasks=GENERAL["tasks"],
        ablation=COMPARE["ablation"],
        published=COMPARE.get("published"),
        n_boot=COMPARE["n_boot"],
        alpha=COMPARE["alpha"],
        seed=EVAL_SEED["compare"],
        schemas={
            "per_question": table_schema("evaluate_blend_per_question"),
            "items": table_schema("evaluate_general_items"),
            "blend_scores": table_schema("evaluate_blend_all_scores"),
            "blend_comparison": table_schema("evaluate_blend_comparison"),
            "general_scores": table_schema("evaluate_general_scores"),
            "general_comparison": table_schema("evaluate_general_comparison"),
        },
    script:
        "../scripts/compare_models.py"
