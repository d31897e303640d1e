# Rules of stage group 'report': what every pipeline dropped, in one table for the report.


include: "report_common.smk"


rule drops_summary:
    input:
        unpack(drop_tables),
    output:
        table=f"{REPORT_DIR}/drops.parquet",
        tsv=report(
            f"{REPORT_DIR}/drops.tsv",
            caption="../report/drops_summary.rst",
            category="Drops",
            labels={"table": "all pipelines"},
        ),
    params:
        pipelines=lambda wildcards: list(drop_tables()),
        schema=table_schema("drops"),
    log:
        f"{LOGS}/drops_summary/drops_summary.log",
    benchmark:
        f"{BENCH}/drops_summary/drops_summary.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/drops_summary.py"


# Runs after every pipeline's drop tables, i.e. after every generating job; sums the usage files
# that jobs of API models write beside their outputs (*.api-usage.json).
rule api_usage:
    input:
        unpack(drop_tables),
    output:
        tsv=report(
            f"{REPORT_DIR}/api_usage.tsv",
            caption="../report/api_usage.rst",
            category="API usage",
        ),
    params:
        results=RESULTS,
        rules=lambda wildcards: output_regexes(),
    log:
        f"{LOGS}/api_usage/api_usage.log",
    benchmark:
        f"{BENCH}/api_usage/api_usage.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/api_usage.py"
