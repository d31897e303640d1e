# polyculture: culturally aligned language models and cultural-alignment measurement.
# Entry point; the stages live in rules/*.smk, the logic in src/polyculture/.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The library the rules and scripts use is this workflow's own src/polyculture, whatever else is
# installed: first on this file's import path, and on PYTHONPATH for the scripts, also inside the
# conda environments of `--sdm conda` (envs/*.yaml hold only third-party packages; the profiles
# set conda-not-block-search-path-envvars, without which Snakemake drops PYTHONPATH there).
WORKFLOW_SRC = os.path.join(workflow.basedir, "src")
if os.path.isdir(os.path.join(WORKFLOW_SRC, "polyculture")):
    sys.path.insert(0, WORKFLOW_SRC)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ.update(PYTHONPATH=os.pathsep.join([WORKFLOW_SRC, *inherited]))


# The demo config applies only when no --configfile is given: a preset is a whole config, not
# an overlay on the demo. It is the workflow's own, from whatever directory the run starts.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/prefetch.smk"
include: "rules/models.smk"
include: "rules/consensus.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/benchmarks.smk"
include: "rules/wvs.smk"
include: "rules/alignment.smk"
include: "rules/report.smk"


# Rules that run in the Snakemake process itself, on the submit host, never as cluster jobs:
# downloads (compute nodes are offline: rules/prefetch.smk) and small CPU steps (summaries,
# figures, drop tables, scoring, the alignment analysis), each a few seconds, for which a cluster
# job would cost a submission, a queue wait and two parses of the workflow
# (benchmarks/bench_slurm_overhead.py). CPU rules that are not listed (the built-in model builds)
# and every GPU rule run as cluster jobs; tests/test_slurm.py checks that no GPU rule is local and
# that every other CPU rule is one of those builds.
localrules:
    all,
    prefetch,
    prefetch_item,
    blend_fetch,
    alignment_fetch_responses,
    ingest_statements,
    score_consistency,
    select_ground_truth,
    build_training_set,
    consensus_drops,
    plot_train_loss,
    train_summary,
    blend_answers,
    blend_score,
    compare_models,
    benchmark_items,
    benchmark_responses,
    benchmark_score,
    benchmark_compare,
    wvs_polarity,
    wvs_human_consistency,
    wvs_build_prompts,
    wvs_parse,
    wvs_score,
    wvs_report,
    alignment_inputs,
    alignment_capability,
    alignment,
    alignment_country_heatmap,
    self_consistency,
    mixed_model,
    us_bias,
    alignment_capability_figure,
    speccurve,
    alignment_paper_figures,
    replication_report,
    drops_summary,
    run_summary,
    api_usage,
    model_card,
    push_to_hub,


rule all:
    default_target: True
    input:
        [f"{PREFETCH_DIR}/{kind}/{slug}.json" for kind, slug in PREFETCH_ITEMS],
        models_targets(),
        enabled("consensus", consensus_targets),
        enabled("train", train_targets),
        enabled("evaluate", evaluate_targets),
        enabled("evaluate", benchmarks_targets),
        enabled("wvs", wvs_targets),
        enabled("alignment", alignment_targets),
        report_targets(),
        release_targets(),


# Network jobs run where the network is (polyculture.placement): where the cluster profile's site
# names no network partition and its compute nodes are offline (the default), every rule whose
# jobs all need the network (API models, the Google translator) runs here, on the submit host.
# The cluster profile's job groups (POLYCULTURE_GROUPS) follow placement too: a group's rules
# without GPUs form a group of their own, and a rule run here leaves its group.
for _name, _group in placed_groups(workflow.rules, PLACEMENT, site_groups()).items():
    workflow.get_rule(_name).group = _group
_NETWORK_LOCALRULES = network_localrules(workflow.rules, PLACEMENT)
workflow.localrules(*_NETWORK_LOCALRULES)
announce_localrules(_NETWORK_LOCALRULES)
