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
