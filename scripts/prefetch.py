"""Rule prefetch_item: one hub model, dataset or lm-eval task into the Hugging Face cache (on the
submit host); the marker file says what was fetched and where it lies."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import json
import logging

from polyculture.io import write_text
from polyculture.prefetch import HubItem, cache_dir, prefetch

(row,) = prefetch([HubItem(**snakemake.params.item)], log=logging.getLogger("polyculture"))
row["cache"] = str(cache_dir())
write_text(json.dumps(row, indent=2, sort_keys=True) + "\n", snakemake.output[0])
