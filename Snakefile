# polyculture: culturally aligned language models and cultural-alignment measurement.
# Entry point; the stages live in rules/*.smk, the logic in src/polyculture/.
from snakemake.utils import min_version

min_version("9.0")


# The demo config applies only when no --configfile is given: a preset is a whole config, not
# an overlay on the demo.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/consensus.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/wvs.smk"
include: "rules/alignment.smk"
include: "rules/report.smk"


rule all:
    input:
        models_targets(),
        enabled("consensus", consensus_targets),
        enabled("train", train_targets),
        enabled("evaluate", evaluate_targets),
        enabled("wvs", wvs_targets),
        enabled("alignment", alignment_targets),
        report_targets(),
    default_target: True
