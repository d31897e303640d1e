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
  terminal (or the SLURM job log) says where to look.

Nothing here imports snakemake: the script passes the path.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
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
        sys.stderr.flush()
        last = traceback.format_exception_only(kind, error)[-1].strip()
        original.write(f"{last}\n(full traceback in {path})\n")
        original.flush()

    sys.excepthook = excepthook
    return path
