"""Rule push_to_hub: upload a variant's release directory (adapter + card); write a receipt."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.io import write_json
from polyculture.release import push_release

receipt = push_release(
    snakemake.input.release,
    snakemake.params.repo_id,
    private=snakemake.params.private,
    local_dir=snakemake.params.local_dir,
)
write_json(receipt, snakemake.output.receipt)
