# Rules of the benchmarks listed in evaluate.benchmarks, generic over the benchmark folders of
# src/polyculture/evals/ (issue 27): each benchmark's items, one generation job per engine (a base
# model and its unmerged adapters in one engine, every group of every item in one call per eval
# model, through the answer cache: issue 26), each eval model's responses out of its engine's
# table, its per-item scores, then per benchmark the aggregates (per group, macro, pooled), the
# paired comparison of every (model, base) pair with results, and the summaries
# results/evaluate/<benchmark>/summary.{md,json}.
#
# [benchmark_fetch: data.hub_dataset] → benchmark_items → benchmark_generate (benchmark × engine) → benchmark_responses (benchmark ×
# model) → benchmark_score (benchmark × model) → benchmark_compare (benchmark). Settings and
# helpers are in benchmarks_common.smk.


include: "benchmarks_common.smk"


rule benchmark_fetch:
    output:
        data=directory(f"{EVAL_DIR}/{{benchmark}}/data"),
    log:
        f"{LOGS}/benchmark_fetch/{{benchmark}}.log",
    benchmark:
        f"{BENCH}/benchmark_fetch/{{benchmark}}.tsv"
    wildcard_constraints:
        benchmark=FETCHED_BENCHMARK_RE,
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        **placed(0, network=True),
    params:
        settings=benchmark_settings,
    script:
        "../scripts/benchmark_fetch.py"


rule benchmark_items:
    input:
        data=benchmark_data_input,
    output:
        item_table=f"{EVAL_DIR}/{{benchmark}}/items.parquet",
    log:
        f"{LOGS}/benchmark_items/{{benchmark}}.log",
    benchmark:
        f"{BENCH}/benchmark_items/{{benchmark}}.tsv"
    wildcard_constraints:
        benchmark=BENCHMARK_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        settings=benchmark_settings,
    script:
        "../scripts/benchmark_items.py"


rule benchmark_generate:
    input:
        item_table=f"{EVAL_DIR}/{{benchmark}}/items.parquet",
        model=benchmark_engine_input,
    output:
        responses=f"{EVAL_DIR}/{{benchmark}}/engines/{{bench_engine}}.parquet",
    log:
        f"{LOGS}/benchmark_generate/{{benchmark}}/{{bench_engine}}.log",
    benchmark:
        f"{BENCH}/benchmark_generate/{{benchmark}}/{{bench_engine}}.tsv"
    wildcard_constraints:
        benchmark=BENCHMARK_RE,
        bench_engine=BENCHMARK_ENGINE_RE,
    conda:
        "../envs/evaluate.yaml"
    threads: placed_threads(lambda w: eval_model_gpus(w.bench_engine))
    resources:
        **placed(
            lambda w: eval_model_gpus(w.bench_engine),
            network=lambda w: eval_model_network(w.bench_engine),
        ),
    params:
        spec=lambda w: EVAL_MODELS[w.bench_engine]["model"],
        model=lambda w: eval_model_params(w.bench_engine)["model"],
        members=benchmark_engine_members,
        backend=generation_params(eval_model=lambda w: w.bench_engine),
        generation=benchmark_generation,
        seed=benchmark_seed,
        cache_dir=ANSWER_CACHE,
    script:
        "../scripts/benchmark_generate.py"


rule benchmark_responses:
    input:
        responses=benchmark_engine_responses,
    output:
        responses=f"{EVAL_DIR}/{{benchmark}}/{{bench_model}}/responses.parquet",
        drops=f"{EVAL_DIR}/{{benchmark}}/{{bench_model}}/generate_drops.parquet",
    log:
        f"{LOGS}/benchmark_responses/{{benchmark}}/{{bench_model}}.log",
    benchmark:
        f"{BENCH}/benchmark_responses/{{benchmark}}/{{bench_model}}.tsv"
    wildcard_constraints:
        benchmark=BENCHMARK_RE,
        bench_model=EVAL_MODEL_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        max_drop_rate=lambda w: benchmark_generation(w).get("max_drop_rate"),
    script:
        "../scripts/benchmark_responses.py"


rule benchmark_score:
    input:
        item_table=f"{EVAL_DIR}/{{benchmark}}/items.parquet",
        responses=f"{EVAL_DIR}/{{benchmark}}/{{bench_model}}/responses.parquet",
    output:
        scores=f"{EVAL_DIR}/{{benchmark}}/{{bench_model}}/scores.parquet",
        drops=f"{EVAL_DIR}/{{benchmark}}/{{bench_model}}/score_drops.parquet",
    log:
        f"{LOGS}/benchmark_score/{{benchmark}}/{{bench_model}}.log",
    benchmark:
        f"{BENCH}/benchmark_score/{{benchmark}}/{{bench_model}}.tsv"
    wildcard_constraints:
        benchmark=BENCHMARK_RE,
        bench_model=EVAL_MODEL_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        settings=benchmark_settings,
    script:
        "../scripts/benchmark_score.py"


rule benchmark_compare:
    input:
        scores=benchmark_scores,
    output:
        aggregates=f"{EVAL_DIR}/{{benchmark}}/aggregates.parquet",
        comparison=f"{EVAL_DIR}/{{benchmark}}/comparison.parquet",
        json=f"{EVAL_DIR}/{{benchmark}}/summary.json",
        markdown=report(
            f"{EVAL_DIR}/{{benchmark}}/summary.md",
            caption="../report/evaluate_benchmark.rst",
            category="Evaluation",
            subcategory="{benchmark}",
            labels={"benchmark": "{benchmark}", "table": "summary"},
        ),
    log:
        f"{LOGS}/benchmark_compare/{{benchmark}}.log",
    benchmark:
        f"{BENCH}/benchmark_compare/{{benchmark}}.tsv"
    wildcard_constraints:
        benchmark=BENCHMARK_RE,
    conda:
        "../envs/evaluate.yaml"
    params:
        settings=benchmark_settings,
        models=lambda w: benchmark_models(w.benchmark),
        loaded=lambda w: eval_models_loaded(benchmark_models(w.benchmark)),
        pairs=compare_pairs(),
        n_boot=COMPARE["n_boot"],
        alpha=COMPARE["alpha"],
        seed=EVAL_SEED["compare"],
    script:
        "../scripts/benchmark_compare.py"
