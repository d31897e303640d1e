"""Rule lm_eval: general benchmarks of one model through lm-evaluation-harness, per-item logs kept
(an API model: its generative tasks through chat completions, the log-likelihood ones refused)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])

import os
import tempfile

import torch

from polyculture import general_eval as ge
from polyculture.io import write_outputs

torch.set_num_threads(snakemake.threads)
p, name = snakemake.params, snakemake.wildcards.general_model
specs, refused = ge.runnable_tasks(
    ge.task_specs(p.tasks, p.prompt_defaults), p.model["model"], p.tasks_path
)
with tempfile.TemporaryDirectory() as tmp:
    model_type, model_args, env = ge.model_for_lm_eval(p.model, p.backend, tmp, seed=p.seed)
    os.environ.update(env)  # an endpoint's key, where lm_eval reads it (never in model_args)
    results = ge.run_lm_eval(
        model_type, model_args, specs, task_dir=p.tasks_path, num_fewshot=p.num_fewshot,
        limit=p.limit, batch_size=ge.batch_size_for(model_type, p.batch_size), seed=p.seed,
    ) if specs else {}  # fmt: skip
items = ge.item_table(results, specs, name)
ge.check_items(items, specs)
metrics = ge.metric_table(items, specs)
with write_outputs() as out:
    out.table(items, snakemake.output.item_scores, p.schemas["items"])
    out.table(metrics, snakemake.output.metrics, p.schemas["metrics"])
    out.jsonl(ge.sample_records(results, name), snakemake.output.samples)
    out.json(ge.run_summary(results, refused), snakemake.output.results)
