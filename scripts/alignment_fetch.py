"""Rule alignment_fetch_responses: download the released judged responses from the hub."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_parquet
from polyculture.wvs.replication import load_hub_responses

p = snakemake.params
table = load_hub_responses(p.hub_id, revision=p.revision)
logging.info("downloaded %d rows of %s@%s", table.height, p.hub_id, p.revision)
write_parquet(table, snakemake.output.responses)
