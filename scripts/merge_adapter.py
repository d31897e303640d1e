"""Rule merge_adapter: the adapter folded into its base model, ready to serve."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.release import merge_adapter

merge_adapter(
    snakemake.params.base_model,
    snakemake.input.adapter,
    snakemake.output.merged,
    dtype=snakemake.params.dtype,
)
