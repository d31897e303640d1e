# Rules of stage group 'train': one LoRA adapter per training variant, trained on that
# variant's consensus dialogues with the loss on assistant turns only (polyculture.train).
# Settings, helpers and train_targets() are in train_common.smk.


include: "train_common.smk"


wildcard_constraints:
    train_variant=TRAIN_VARIANT_RE,


# Trains in a run directory (train/<variant>/run) that keeps checkpoints across reruns: a rerun
# after a kill resumes from the latest complete checkpoint of the same settings and data (the
# log says which, and why others were refused; the summary records the steps resumed). The
# run directory also holds the trackers' offline logs (TensorBoard event files by default).
# The adapter's README is a training card; the card with the evaluation results is written
# into release/<variant>/ by rule model_card (rules/release.smk).
# With resources.gpu > 1 the script starts ONE `accelerate launch` process group of that many
# processes (one SLURM task); with 0 or 1 a single process (on the CPU where CUDA is absent).
# One CPU thread per process: more only slows a tiny CPU run down on a shared machine.
rule train_lora:
    input:
        data=f"{RESULTS}/consensus/{{train_variant}}/train.jsonl",
        model=model_input(TRAIN["base_model"]),
    output:
        adapter=directory(adapter_dir("{train_variant}")),
        loss=f"{RESULTS}/train/{{train_variant}}/loss.parquet",
        drops=f"{RESULTS}/train/{{train_variant}}/drops.parquet",
        summary=f"{RESULTS}/train/{{train_variant}}/summary.json",
    log:
        f"{LOGS}/train_lora/{{train_variant}}.log",
    benchmark:
        f"{BENCH}/train_lora/{{train_variant}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: max(1, TRAIN["gpus"])
    resources:
        **placed(TRAIN["gpus"], minutes=720, multi_gpu=True),
        tasks=1,
    params:
        settings=TRAIN_SETTINGS,
        base_model=train_base_model,
        base_model_spec=TRAIN["base_model"],
        run_dir=train_run_dir,
        run_name=train_run_name,
    script:
        "../scripts/train_lora.py"


rule plot_train_loss:
    input:
        loss=f"{RESULTS}/train/{{train_variant}}/loss.parquet",
    output:
        figure=report(
            f"{RESULTS}/train/{{train_variant}}/loss.png",
            caption="../report/train_loss.rst",
            category="Training",
            labels={"variant": "{train_variant}", "figure": "loss curve"},
        ),
    log:
        f"{LOGS}/plot_train_loss/{{train_variant}}.log",
    benchmark:
        f"{BENCH}/plot_train_loss/{{train_variant}}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        title=train_loss_title,
        schema=table_schema("train_loss"),
    script:
        "../scripts/plot_train_loss.py"


rule train_summary:
    input:
        summaries=expand(f"{RESULTS}/train/{{v}}/summary.json", v=TRAIN_VARIANTS),
        drops=expand(f"{RESULTS}/train/{{v}}/drops.parquet", v=TRAIN_VARIANTS),
    output:
        table=report(
            f"{RESULTS}/train/summary.tsv",
            caption="../report/train_summary.rst",
            category="Training",
            labels={"table": "training summary"},
        ),
        drops=f"{RESULTS}/train/drops.parquet",
    log:
        f"{LOGS}/train_summary/summary.log",
    benchmark:
        f"{BENCH}/train_summary/summary.tsv"
    conda:
        "../envs/train.yaml"
    params:
        drops_schema=table_schema("train_drops"),
    script:
        "../scripts/train_summary.py"
