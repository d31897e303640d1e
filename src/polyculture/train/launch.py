"""Starting a training job: one Python process, or one `accelerate launch` process group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from polyculture.errors import ConfigError
from polyculture.io import write_json
from polyculture.train.settings import TrainJob


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def free_port() -> int:
    """A TCP port that is free now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(job_file: str | os.PathLike[str], num_processes: int) -> list[str]:
    """The command that trains `job_file`: plain Python for one process, otherwise ONE
    `accelerate launch` process group of `num_processes` processes on this machine (torchrun
    underneath; NCCL on GPUs, gloo where CUDA is absent)."""
    entry = ["-m", "polyculture.train", "--job", str(job_file)]
    if num_processes <= 1:
        return [sys.executable, *entry]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--machine_rank",
        "0",
        "--main_process_port",
        str(free_port()),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",  # precision is the Trainer's (bf16 flag), not accelerate's
        "--multi_gpu",
        *entry,
    ]


def launch(
    job: TrainJob,
    num_processes: int,
    log_path: str | os.PathLike[str] | None = None,
    *,
    allow_cpu_group: bool = False,
) -> None:
    """Write the job file into the run directory and run the training command, appending its
    output to `log_path`; fails when the training process fails. A group of several processes
    needs CUDA unless `allow_cpu_group` (tests run a two-process group on the CPU)."""
    if num_processes > 1 and not allow_cpu_group and not _cuda_available():
        raise ConfigError(
            "train.gpus",
            f"{num_processes} GPU processes requested but CUDA is not available on this machine",
        )
    job_file = Path(job.run_dir) / "job.json"
    write_json(job.to_json(), job_file)
    cmd = launch_command(job_file, num_processes)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        if out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, env=env)
    finally:
        if out:
            out.close()
    if proc.returncode != 0:
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(f"training of '{job.group}' failed (exit {proc.returncode}){where}")
