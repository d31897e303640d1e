"""Where a rule's script writes its diagnostics: the rule's own `log:` file.

Every script in scripts/ calls `log_to(snakemake.log[0])` before anything else, so that what a
user needs after a failure is in `results/logs/...` next to the rule's other logs, on a laptop
and on a cluster alike (not in `.snakemake/slurm_logs/` or a terminal that is gone):

- `logging` records of the script and of every library (root logger), in one format;
- `warnings` (through `logging.captureWarnings`);
- everything written to stderr, by Python (`sys.stderr`, tqdm progress bars) and by native code
  or child processes (`accelerate launch`, torch's C++ warnings), because file descriptor 2 itself
  is pointed at the log;
- the traceback of an uncaught exception, logged as one record; a single line naming the
  exception and the log file also goes to the stderr the script started with, so Snakemake's
  terminal (or the SLURM job log) says where to look. When the exception is a hub access that
  failed because the job runs offline, both also say which item was missing and how to prefetch
  it (`polyculture.prefetch.offline_hint`).

Nothing here imports snakemake: the script passes the path.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

#: The one format of every script log line.
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to(path: str | os.PathLike[str], level: int = logging.INFO) -> Path:
    """Route this process's logging, warnings, stderr and uncaught tracebacks into `path`.

    The file is opened for appending (Snakemake removes a rule's old log before the job runs; a
    retried job appends). Returns the path. Calling it again moves the routing to the new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    # The stderr this process started with, for the one-line pointer to the log on a crash.
    original = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    # A fresh line-buffered text stream on the redirected descriptor: Python and native writes
    # share one file offset (O_APPEND), so their lines interleave in the order they happen.
    sys.stderr = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1)
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr, force=True)
    logging.captureWarnings(True)

    def excepthook(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        logging.getLogger("polyculture").critical("uncaught exception", exc_info=(kind, error, tb))
        last = traceback.format_exception_only(kind, error)[-1].strip()
        hint = _offline_hint(error)
        if hint:
            logging.getLogger("polyculture").critical("%s", hint)
            last = f"{last}\n{hint}"
        sys.stderr.flush()
        original.write(f"{last}\n(full traceback in {path})\n")
        original.flush()

    sys.excepthook = excepthook
    logging.getLogger("polyculture").info("%s", hub_access())
    return path


def hub_access(environ: Mapping[str, str] | None = None) -> str:
    """One line saying whether this process may reach the Hugging Face hub and which cache it
    reads (cluster jobs run offline: rules/common.smk, polyculture.prefetch)."""
    env = os.environ if environ is None else environ
    offline = [k for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if _truthy(env.get(k))]
    cache = env.get("HF_HOME") or "~/.cache/huggingface"
    mode = f"offline ({', '.join(offline)})" if offline else "online"
    return f"hub access: {mode}; Hugging Face cache {cache}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _offline_hint(error: BaseException) -> str | None:
    """polyculture.prefetch.offline_hint, imported only on a crash; never raises."""
    try:
        from polyculture.prefetch import offline_hint

        return offline_hint(error)
    except Exception:
        return None
