# Rules of stage group 'consensus': cross-lingual consensus training data (docs/design.md §1, paper §3).
#
# statements → paragraphs → questions → question pairs → responses (shards) → embeddings (shards)
# → consistency → ground truth per selection mode → translated ground truth → critiques
# → train.jsonl per variant. Everything up to the consistency scores is shared by all variants;
# ground truth, its translation and the critiques are shared by variants with the same selection
# mode; only the region filter and the mixing with general data are per variant.
# Settings, helpers and consensus_targets() are in consensus_common.smk.


include: "consensus_common.smk"


rule ingest_statements:
    input:
        sources=[s["path"] for s in CONS_CFG["sources"] if s.get("path")],
    output:
        statements=f"{CONS}/statements.parquet",
        drops=f"{CONS}/drops/ingest_statements.parquet",
    log:
        f"{LOGS}/ingest_statements/ingest_statements.log",
    benchmark:
        f"{BENCH}/ingest_statements/ingest_statements.tsv"
    conda:
        "../envs/consensus.yaml"
    params:
        sources=CONS_CFG["sources"],
        candle=CONS_CFG["candle"],
        min_per_country=CONS_CFG["min_per_country"],
        max_per_country=CONS_CFG["max_per_country"],
        on_unknown_country=CONS_CFG["on_unknown_country"],
        seed=CONS_SEED["ingest"],
        download_dir=f"{CONS}/downloads",
        candle_schema=table_schema("consensus_candle"),
        cultureatlas_schema=table_schema("consensus_cultureatlas"),
        schema=table_schema("consensus_statements"),
    script:
        "../scripts/consensus_ingest_statements.py"


rule write_paragraphs:
    input:
        statements=f"{CONS}/statements.parquet",
        model=model_input(CONS_CFG["generator"]),
    output:
        paragraphs=f"{CONS}/paragraphs.parquet",
        drops=f"{CONS}/drops/write_paragraphs.parquet",
    log:
        f"{LOGS}/write_paragraphs/write_paragraphs.log",
    benchmark:
        f"{BENCH}/write_paragraphs/write_paragraphs.tsv"
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(model_gpus(CONS_CFG["generator"]))
    resources:
        **placed(
            model_gpus(CONS_CFG["generator"]),
            network=model_network(CONS_CFG["generator"]),
        ),
    params:
        model=consensus_generator,
        backend=CONS_BACKEND,
        prompt=lambda wildcards: CONS_CFG["paragraph_prompt"],
        stage=consensus_stage_params("paragraphs"),
        seed=CONS_SEED["paragraphs"],
        schema=table_schema("consensus_paragraphs"),
    script:
        "../scripts/consensus_write_paragraphs.py"


rule generate_questions:
    input:
        paragraphs=f"{CONS}/paragraphs.parquet",
        statements=f"{CONS}/statements.parquet",
        model=model_input(CONS_CFG["generator"]),
        translator_model=consensus_translator_input(),
    output:
        questions=f"{CONS}/questions.parquet",
        drops=f"{CONS}/drops/generate_questions.parquet",
    log:
        f"{LOGS}/generate_questions/generate_questions.log",
    benchmark:
        f"{BENCH}/generate_questions/generate_questions.tsv"
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(max(model_gpus(CONS_CFG["generator"]), translator_gpus()))
    resources:
        **placed(
            max(model_gpus(CONS_CFG["generator"]), translator_gpus()),
            network=model_network(CONS_CFG["generator"]) or translator_network(),
        ),
    params:
        model=consensus_generator,
        backend=CONS_BACKEND,
        translator=consensus_translator(),
        prompt=lambda wildcards: CONS_CFG["question_prompt"],
        k=CONS_CFG["questions"]["k"],
        max_chars=CONS_CFG["questions"]["max_chars"],
        regions=CONS_CFG["regions"],
        stage=consensus_stage_params("questions"),
        seed=CONS_SEED["questions"],
        schema=table_schema("consensus_questions"),
    script:
        "../scripts/consensus_generate_questions.py"


rule translate_questions:
    input:
        questions=f"{CONS}/questions.parquet",
        model=consensus_translator_input(),
    output:
        pairs=f"{CONS}/question_pairs.parquet",
        drops=f"{CONS}/drops/translate_questions.parquet",
    log:
        f"{LOGS}/translate_questions/translate_questions.log",
    benchmark:
        f"{BENCH}/translate_questions/translate_questions.tsv"
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(translator_gpus())
    resources:
        **placed(translator_gpus(), network=translator_network()),
    params:
        translator=consensus_translator(),
        backend=CONS_BACKEND,
        max_drop_rate=CONS_CFG["translation"]["max_drop_rate"],
        schema=table_schema("consensus_question_pairs"),
    script:
        "../scripts/consensus_translate_questions.py"


rule translate_requests:
    input:
        pairs=f"{CONS}/question_pairs.parquet",
        model=(
            consensus_translator_input()
            if CONS_CFG["requests"]["translate_missing"]
            else []
        ),
    output:
        requests=f"{CONS}/requests.parquet",
    log:
        f"{LOGS}/translate_requests/translate_requests.log",
    benchmark:
        f"{BENCH}/translate_requests/translate_requests.tsv"
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(translator_gpus())
    resources:
        **placed(translator_gpus(), network=translator_network()),
    params:
        requests={k: CONS_CFG["requests"][k] for k in ("critique", "refine")},
        translate_missing=CONS_CFG["requests"]["translate_missing"],
        translator=consensus_translator(),
        backend=CONS_BACKEND,
        schema=table_schema("consensus_requests"),
    script:
        "../scripts/consensus_translate_requests.py"


rule sample_responses:
    input:
        pairs=f"{CONS}/question_pairs.parquet",
        model=model_input(CONS_CFG["generator"]),
    output:
        responses=f"{CONS}/responses/shard-{{shard}}.parquet",
    log:
        f"{LOGS}/sample_responses/shard-{{shard}}.log",
    benchmark:
        f"{BENCH}/sample_responses/shard-{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(model_gpus(CONS_CFG["generator"]))
    resources:
        **placed(
            model_gpus(CONS_CFG["generator"]),
            network=model_network(CONS_CFG["generator"]),
        ),
    params:
        model=consensus_generator,
        backend=CONS_BACKEND,
        n=CONS_CFG["samples"],
        n_shards=len(CONS_SHARDS),
        sampling=CONS_CFG["responses"]["sampling"],
        seed=lambda wildcards: CONS_SEED["responses"] + int(wildcards.shard),
        schema=table_schema("consensus_responses"),
    script:
        "../scripts/consensus_sample_responses.py"


rule embed_responses:
    input:
        responses=f"{CONS}/responses/shard-{{shard}}.parquet",
        model=model_input(CONS_CFG["embedder"]),
    output:
        embeddings=f"{CONS}/embeddings/shard-{{shard}}.parquet",
        drops=f"{CONS}/drops/embed_responses/shard-{{shard}}.parquet",
    log:
        f"{LOGS}/embed_responses/shard-{{shard}}.log",
    benchmark:
        f"{BENCH}/embed_responses/shard-{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(model_gpus(CONS_CFG["embedder"]))
    resources:
        **placed(model_gpus(CONS_CFG["embedder"])),
    params:
        model=consensus_embedder,
        batch_size=config["backend"]["embed_batch_size"],
        prompt_name=CONS_CFG["embed_prompt_name"],
        max_drop_rate=CONS_CFG["responses"]["max_drop_rate"],
        schema=table_schema("consensus_embeddings"),
    script:
        "../scripts/consensus_embed_responses.py"


rule score_consistency:
    input:
        embeddings=expand(
            f"{CONS}/embeddings/shard-{{shard}}.parquet", shard=CONS_SHARDS
        ),
    output:
        consistency=f"{CONS}/consistency.parquet",
        samples=f"{CONS}/sample_similarity.parquet",
        drops=f"{CONS}/drops/score_consistency.parquet",
    log:
        f"{LOGS}/score_consistency/score_consistency.log",
    benchmark:
        f"{BENCH}/score_consistency/score_consistency.tsv"
    conda:
        "../envs/consensus.yaml"
    params:
        min_samples=CONS_CFG["consistency"]["min_samples"],
        max_drop_rate=CONS_CFG["consistency"]["max_drop_rate"],
        consistency_schema=table_schema("consensus_consistency"),
        samples_schema=table_schema("consensus_sample_similarity"),
    script:
        "../scripts/consensus_score_consistency.py"


rule select_ground_truth:
    input:
        consistency=f"{CONS}/consistency.parquet",
        samples=f"{CONS}/sample_similarity.parquet",
        pairs=f"{CONS}/question_pairs.parquet",
        responses=expand(f"{CONS}/responses/shard-{{shard}}.parquet", shard=CONS_SHARDS),
    output:
        ground_truth=f"{CONS}/selection/{{selection}}/ground_truth.parquet",
    log:
        f"{LOGS}/select_ground_truth/{{selection}}.log",
    benchmark:
        f"{BENCH}/select_ground_truth/{{selection}}.tsv"
    wildcard_constraints:
        selection=CONS_SELECTION_RE,
    conda:
        "../envs/consensus.yaml"
    params:
        seed=CONS_SEED["selection"],
        schema=table_schema("consensus_ground_truth"),
    script:
        "../scripts/consensus_select_ground_truth.py"


rule translate_ground_truth:
    input:
        ground_truth=f"{CONS}/selection/{{selection}}/ground_truth.parquet",
        model=consensus_translator_input(),
    output:
        translated=f"{CONS}/selection/{{selection}}/ground_truth_translated.parquet",
        drops=f"{CONS}/drops/translate_ground_truth/{{selection}}.parquet",
    log:
        f"{LOGS}/translate_ground_truth/{{selection}}.log",
    benchmark:
        f"{BENCH}/translate_ground_truth/{{selection}}.tsv"
    wildcard_constraints:
        selection=CONS_SELECTION_RE,
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(translator_gpus())
    resources:
        **placed(translator_gpus(), network=translator_network()),
    params:
        translator=consensus_translator(),
        backend=CONS_BACKEND,
        skip_confidence=CONS_CFG["ground_truth"]["skip_translation_confidence"],
        skip_same_language=CONS_CFG["ground_truth"]["skip_same_language"],
        max_drop_rate=CONS_CFG["ground_truth"]["max_drop_rate"],
        schema=table_schema("consensus_ground_truth_translated"),
    script:
        "../scripts/consensus_translate_ground_truth.py"


rule critique:
    input:
        translated=f"{CONS}/selection/{{selection}}/ground_truth_translated.parquet",
        samples=f"{CONS}/sample_similarity.parquet",
        responses=expand(f"{CONS}/responses/shard-{{shard}}.parquet", shard=CONS_SHARDS),
        model=model_input(CONS_CFG["generator"]),
    output:
        critiques=f"{CONS}/selection/{{selection}}/critiques.parquet",
        drops=f"{CONS}/drops/critique/{{selection}}.parquet",
    log:
        f"{LOGS}/critique/{{selection}}.log",
    benchmark:
        f"{BENCH}/critique/{{selection}}.tsv"
    wildcard_constraints:
        selection=CONS_SELECTION_RE,
    conda:
        "../envs/consensus.yaml"
    threads: placed_threads(model_gpus(CONS_CFG["generator"]))
    resources:
        **placed(
            model_gpus(CONS_CFG["generator"]),
            network=model_network(CONS_CFG["generator"]),
        ),
    params:
        model=consensus_generator,
        backend=CONS_BACKEND,
        prompt=lambda wildcards: CONS_CFG["critique_prompt"],
        method=CONS_CFG["critique_method"],
        culfit=CONS_CFG["culfit"],
        stage=consensus_stage_params("critique"),
        seed=CONS_SEED["critique"],
        schema=table_schema("consensus_critiques"),
    script:
        "../scripts/consensus_critique.py"


rule build_training_set:
    input:
        critiques=lambda wildcards: f"{CONS}/selection/{CONS_VARIANTS[wildcards.variant]['selection']}/critiques.parquet",
        requests=f"{CONS}/requests.parquet",
        general=[CONS_CFG["general"]["path"]] if CONS_CFG["general"].get("path") else [],
    output:
        train=f"{CONS}/{{variant}}/train.jsonl",
        counts=f"{CONS}/{{variant}}/counts.parquet",
        counts_md=report(
            f"{CONS}/{{variant}}/counts.md",
            caption="../report/consensus_counts.rst",
            category="Consensus",
            labels={"variant": "{variant}", "table": "training examples"},
        ),
        drops=f"{CONS}/drops/build_training_set/{{variant}}.parquet",
    log:
        f"{LOGS}/build_training_set/{{variant}}.log",
    benchmark:
        f"{BENCH}/build_training_set/{{variant}}.tsv"
    wildcard_constraints:
        variant=CONS_VARIANT_RE,
    conda:
        "../envs/consensus.yaml"
    params:
        region_filter=lambda wildcards: CONS_VARIANTS[wildcards.variant][
            "region_filter"
        ],
        language_filter=lambda wildcards: CONS_VARIANTS[wildcards.variant].get(
            "language_filter", False
        ),
        general=CONS_CFG["general"],
        seed=CONS_SEED["mix"],
        aya_schema=table_schema("consensus_aya"),
        train_schema=table_schema("consensus_train"),
        counts_schema=table_schema("consensus_counts"),
    script:
        "../scripts/consensus_build_training_set.py"


rule consensus_drops:
    input:
        drops=[
            f"{CONS}/drops/ingest_statements.parquet",
            f"{CONS}/drops/write_paragraphs.parquet",
            f"{CONS}/drops/generate_questions.parquet",
            f"{CONS}/drops/translate_questions.parquet",
            *expand(
                f"{CONS}/drops/embed_responses/shard-{{shard}}.parquet",
                shard=CONS_SHARDS,
            ),
            f"{CONS}/drops/score_consistency.parquet",
            *expand(
                f"{CONS}/drops/translate_ground_truth/{{selection}}.parquet",
                selection=CONS_SELECTIONS,
            ),
            *expand(
                f"{CONS}/drops/critique/{{selection}}.parquet",
                selection=CONS_SELECTIONS,
            ),
            *expand(
                f"{CONS}/drops/build_training_set/{{variant}}.parquet",
                variant=list(CONS_VARIANTS),
            ),
        ],
    output:
        table=f"{CONS}/drops.parquet",
        markdown=report(
            f"{CONS}/drops.md",
            caption="../report/consensus_drops.rst",
            category="Drops",
            labels={"stage group": "consensus", "table": "drops"},
        ),
    log:
        f"{LOGS}/consensus_drops/consensus_drops.log",
    benchmark:
        f"{BENCH}/consensus_drops/consensus_drops.tsv"
    conda:
        "../envs/consensus.yaml"
    params:
        schema=table_schema("consensus_drops"),
    script:
        "../scripts/consensus_drops.py"
