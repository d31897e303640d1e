# Rules of the prefetch stage: everything the config loads from the Hugging Face hub — models
# (eval models, adapter bases, generator, embedder, translator, judge), hub adapters of eval
# models (checked once fetched: adapter_config.json, base model), hub datasets and
# lm-evaluation-harness tasks, listed by polyculture.prefetch.hub_items — fetched into one cache
# (HF_HOME; the libraries' default ~/.cache/huggingface where unset) by the submit host (these
# are localrules), before any job that loads them. Cluster jobs then run offline (common.smk).
#
#   snakemake prefetch --profile profiles/slurm   # only the prefetch
#
# One marker file per item: adding a model to the config fetches that model and reruns only the
# rules that load it.
from dataclasses import asdict


rule prefetch_item:
    output:
        f"{PREFETCH_DIR}/{{kind}}/{{slug}}.json",
    log:
        f"{LOGS}/prefetch/{{kind}}/{{slug}}.log",
    benchmark:
        f"{BENCH}/prefetch/{{kind}}/{{slug}}.tsv"
    wildcard_constraints:
        kind="model|adapter|dataset|lm_eval_task",
    conda:
        "../envs/evaluate.yaml"
    params:
        item=lambda w: asdict(PREFETCH_ITEMS[(w.kind, w.slug)]),
    script:
        "../scripts/prefetch.py"


rule prefetch:
    input:
        [f"{PREFETCH_DIR}/{kind}/{slug}.json" for kind, slug in PREFETCH_ITEMS],
