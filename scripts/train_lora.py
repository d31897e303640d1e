"""Rule train_lora: train one variant's LoRA adapter (one process, or one accelerate group)."""

from polyculture.logs import log_to

log_to(snakemake.log[0])


from polyculture.train import TrainJob, TrainSettings, launch, threads_per_process

num_processes = int(snakemake.resources.gpu)
job = TrainJob(
    data=snakemake.input.data,
    base_model=snakemake.params.base_model,
    run_dir=snakemake.params.run_dir,
    adapter_dir=snakemake.output.adapter,
    loss_path=snakemake.output.loss,
    drops_path=snakemake.output.drops,
    summary_path=snakemake.output.summary,
    group=snakemake.wildcards.train_variant,
    settings=TrainSettings.from_mapping(snakemake.params.settings),
    cpu_threads=threads_per_process(snakemake.threads, num_processes),
    run_name=snakemake.params.run_name,
    base_model_spec=snakemake.params.base_model_spec,
)
launch(job, num_processes, snakemake.log[0])
