"""Rule alignment_inputs: responses and ground truth (workflow or released files) as the
canonical tables every alignment rule reads."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import logging

from polyculture.io import write_outputs
from polyculture.wvs.alignment import build_analysis_data, summarise_cells
from polyculture.wvs.replication import prepare_inputs

i, p = snakemake.input, snakemake.params
inputs = prepare_inputs(
    responses_source=p.responses_source,
    scored_paths=list(i.get("scored", [])),
    responses_path=i.get("responses"),
    template_type=p.template_type,
    ground_truth_source=p.ground_truth_source,
    polarity_path=i.get("polarity"),
    country_languages_path=i.get("country_languages"),
    human_consistency_path=i.get("human_consistency"),
    country_path=i.get("country"),
    language_path=i.get("language"),
    global_path=i.get("global_"),
    use_merged=p.use_merged,
    countries=p.countries,
)
cells = summarise_cells(build_analysis_data(inputs.responses, inputs.ground_truth))
logging.info("cells:\n%s\ndrops:\n%s", cells, inputs.drops)
o = snakemake.output
with write_outputs() as out:
    for name in ("responses", "ground_truth", "country_languages", "human_consistency", "drops"):
        out.parquet(getattr(inputs, name), o[name])
    out.parquet(cells, o.cells)
