# Settings and helpers of stage group 'report' (rules/report.smk), and report_targets().

from polyculture.workflow import SUMMARY_TABLES, api_models_used

REPORT_DIR = f"{RESULTS}/report"
PIPELINES_WITH_DROPS = ["consensus", "train", "evaluate", "wvs", "alignment"]


def drop_tables(wildcards=None):
    """Drop-count tables of the enabled pipelines, by pipeline (each pipeline's own summary
    where it writes one, else its per-stage tables)."""
    tables = {
        "consensus": [f"{CONS}/drops.parquet"],
        "train": [f"{RESULTS}/train/drops.parquet"],
        "evaluate": expand(
            f"{BLEND_DIR}/{{model}}/drops/{{country}}.parquet",
            model=list(EVAL_MODELS),
            country=BLEND_COUNTRIES,
        )
        + benchmark_drop_tables(),
        "wvs": list(rules.wvs_report.input.drops),
        "alignment": [f"{ALIGN}/drops.parquet"],
    }
    return {
        p: tables[p]
        for p in PIPELINES_WITH_DROPS
        if config["pipelines"][p] and tables[p]
    }


def output_regexes():
    """Rule name → regular expression of its first output, so that a job's API usage file (beside
    that output) is summed under its rule."""
    from snakemake.io import regex_from_filepattern

    return {
        r.name: regex_from_filepattern(str(r.output[0]))
        for r in workflow.rules
        if r.output and r.name != "api_usage"
    }


def summary_tables(wildcards=None):
    """The result tables of the enabled pipelines that the run's summary.md sums up, by name
    (polyculture.summary.TABLES)."""
    on = config["pipelines"]
    names = []
    if on["evaluate"] and EVAL_MODELS:
        names += [
            "blend_scores",
            "blend_comparison",
            "general_scores",
            "general_comparison",
        ]
    if on["alignment"]:
        names += ["alignment", "self_consistency"]
        if AL["published"]:
            names.append("replication")
    if drop_tables():
        names.append("drops")
    tables = {name: f"{RESULTS}/{SUMMARY_TABLES[name].path}" for name in names}
    if on["evaluate"] and EVAL_MODELS:
        tables.update(
            {
                f"benchmark_{i}": f"{benchmark_dir(b)}/summary.json"
                for i, b in enumerate(BENCHMARKS)
            }
        )
    return tables


def report_targets():
    """Final outputs of this stage group that rule all requests."""
    summary = [f"{RESULTS}/summary.md"] if summary_tables() else []
    if not drop_tables():
        return summary
    api = [f"{REPORT_DIR}/api_usage.tsv"] if api_models_used(config) else []
    return [f"{REPORT_DIR}/drops.parquet", f"{REPORT_DIR}/drops.tsv", *api, *summary]
