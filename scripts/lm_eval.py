"""Rule lm_eval: general benchmarks of one model through lm-evaluation-harness, per-item logs kept."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import tempfile

import torch

from polyculture import general_eval as ge
from polyculture.io import write_outputs

torch.set_num_threads(snakemake.threads)
p, name = snakemake.params, snakemake.wildcards.general_model
specs = ge.task_specs(p.tasks, p.prompt_defaults)
backend = ge.resolve_eval_backend(p.backend.get("generation", "auto"))
with tempfile.TemporaryDirectory() as tmp:
    model, adapter = ge.prepare_model(
        p.model["model"], p.model["adapter"], p.model["merge_adapter"], tmp
    )
    model_type, model_args = ge.lm_eval_model(
        model, adapter=adapter, backend=backend, dtype=p.backend.get("dtype", "auto"),
        vllm_options=p.backend["engine"],
    )  # fmt: skip
    results = ge.run_lm_eval(
        model_type, model_args, specs, task_dir=p.tasks_path, num_fewshot=p.num_fewshot,
        limit=p.limit, batch_size=ge.batch_size_for(model_type, p.batch_size), seed=p.seed,
    )  # fmt: skip
items = ge.item_table(results, specs, name)
ge.check_items(items, specs)
metrics = ge.metric_table(items, specs)
with write_outputs() as out:
    out.table(items, snakemake.output.item_scores, p.schemas["items"])
    out.table(metrics, snakemake.output.metrics, p.schemas["metrics"])
    out.jsonl(ge.sample_records(results, name), snakemake.output.samples)
    out.json(ge.run_summary(results), snakemake.output.results)
