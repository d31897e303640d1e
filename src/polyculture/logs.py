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
  it (`offline_hint`, for the jobs that run offline: `OFFLINE_ENV`, set by rules/common.smk on
  cluster jobs whose hub items the prefetch target fetched before, polyculture.prefetch).

Nothing here imports snakemake: the script passes the path.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

#: The one format of every script log line.
#: The target that runs the prefetch on the submit host (rule `prefetch` in the Snakefile; polyculture.prefetch).
PREFETCH_TARGET = "prefetch"
#: Environment variables that put the Hugging Face libraries offline (set on cluster jobs by
#: profiles/slurm through sbatch --export).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


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
    """offline_hint on a crash; never raises."""
    try:
        return offline_hint(error)
    except Exception:
        return None


def cache_dir() -> Path:
    """The Hugging Face cache root the libraries use here (HF_HOME, else their default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


#: Error types (by name, anywhere in an exception's chain) that mean "wanted the network while
#: offline, and the cache lacks it", from huggingface_hub, transformers and datasets.
_OFFLINE_ERRORS = {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}
_OFFLINE_TEXT = re.compile(
    r"offline mode|HF_HUB_OFFLINE|couldn't connect to|cannot find the requested files in the "
    r"local cache|couldn't reach|not found in cache|outgoing traffic has been disabled",
    re.IGNORECASE,
)
_REPO_ID = re.compile(r"['\"]([A-Za-z0-9][\w.-]*/[\w.-]+)['\"]")


#: Argument names under which the hub clients (huggingface_hub, transformers, datasets,
#: sentence-transformers) hold the id they are loading.
_ID_ARGUMENTS = (
    "repo_id",
    "path_or_repo_id",
    "pretrained_model_name_or_path",
    "model_name_or_path",
    "path",
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _frame_repo_ids(chain: list[BaseException]) -> list[str]:
    """Hub ids the failing calls were loading, from the arguments in the tracebacks' frames
    (outermost first: the id the workflow asked for)."""
    ids = []
    for error in chain:
        tb = error.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            for name in _ID_ARGUMENTS:
                value = local.get(name)
                if (
                    isinstance(value, str)
                    and _HUB_ID.fullmatch(value)
                    and not Path(value).exists()
                    and value not in ids
                ):
                    ids.append(value)
            tb = tb.tb_next
    return ids


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def offline_hint(error: BaseException, environ: Mapping[str, str] | None = None) -> str | None:
    """A message naming the missing item and the prefetch target when `error` is a hub access
    that failed because this process runs offline; None for any other error."""
    env = os.environ if environ is None else environ
    if not any(_truthy(env.get(k)) for k in OFFLINE_ENV):
        return None
    chain = _chain(error)
    texts = [str(e) for e in chain]
    if not (
        any(type(e).__name__ in _OFFLINE_ERRORS for e in chain)
        or any(_OFFLINE_TEXT.search(t) for t in texts)
    ):
        return None
    ids = _frame_repo_ids(chain) + [
        m for t in texts for m in _REPO_ID.findall(t) if not m.startswith(("http", "/"))
    ]
    what = f"'{ids[0]}'" if ids else "a hub model or dataset"
    return (
        f"this job runs offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set) and needed {what}, "
        f"which is not in the Hugging Face cache {env.get('HF_HOME') or cache_dir()}. "
        f"Fetch it on the submit host with the prefetch target "
        f"(`snakemake {PREFETCH_TARGET} --profile profiles/slurm`, same "
        f"--configfile and HF_HOME as the run), then rerun."
    )
