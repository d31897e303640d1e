"""A per-item cache of a local model's answers, outside a job's declared outputs, so that a job
killed half-way, or rerun with a country or an adapter more, generates only what it lacks.

Snakemake marks every output of a failed job incomplete and deletes it; what a long generation
job had finished is kept here instead (the idea of the openai backend's reply cache, whose key
hash :func:`request_key` this module holds for both).

Keys. An item's key is the hash of (model identity, prompt, sample count, sampling settings,
the item's seed, prompt format): the model identity (:func:`model_identity`) is the model spec,
a fingerprint of the base model's files where they are a local directory, the adapter's
fingerprint (a hash of its files, so a retrained adapter never reuses the old answers), the
backend and the load settings that change outputs (dtype, batch size, engine options). The
item's seed is `derive_seed(sampling.seed, index)` of its position in its call where sampling
is random, and absent where it is greedy (the seed does not enter greedy decoding).

Unit of work. A *call* (one `Generator` call: e.g. one eval model × one BLEnD country) is run
whole or not at all (:func:`cached_call`): where every item of the call is cached, nothing is
generated; where any is missing, the whole call runs as it would without the cache, so its
batches (the hf backend's length-sorted batches) and the items' seeds are those of a clean run,
and a resumed run gives the outputs of an uninterrupted one. So a rerun after a kill repeats
only the calls that had not finished; a new country or a new adapter is a new call; a new prompt
template of an existing country reruns that country's call.

Storage. One segment file per finished call under `root/<namespace>/<xx>/<call key>.json` (the
call's item keys and answers), written atomically (temporary file, then rename) when the call
returns. A cache is opened by reading every segment of its namespace once (an index of item
key → answers); a damaged segment is skipped with a warning. One file per call rather than per
item: a paper-scale BLEnD run has ~10^5 items but ~10^2 calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Files up to this size enter a directory fingerprint whole; larger ones by name, size and
#: their first and last MiB (our choice: a base model's weights are GBs, read on every job
#: otherwise, while an adapter's or a built-in model's files are small and hashed whole).
FULL_HASH_BYTES = 256 * 2**20
_EDGE = 2**20


def request_key(payload: Mapping[str, Any]) -> str:
    """Hash of everything that decides a reply (canonical JSON)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dir_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hash of a directory's files (relative names and contents; files over FULL_HASH_BYTES by
    name, size and first and last MiB), or of a file; hidden files are left out."""
    root = Path(path)
    files = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
        )
    )
    if not files:
        raise FileNotFoundError(f"{root}: no files to fingerprint")
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(root) if p != root else p.name}\0{size}\0".encode())
        with p.open("rb") as f:
            if size <= FULL_HASH_BYTES:
                for block in iter(lambda: f.read(2**20), b""):
                    h.update(block)
            else:
                h.update(f.read(_EDGE))
                f.seek(size - _EDGE)
                h.update(f.read(_EDGE))
    return h.hexdigest()


def model_identity(
    spec: str,
    path: str,
    adapter: str | None,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """What decides a model's answers besides the prompt and sampling: the spec, a fingerprint
    of the base model directory (None for a hub id or an API model: the spec names it), the
    adapter's fingerprint (None without one) and the load `settings` (backend, dtype, batch
    size, engine options, merge flag)."""
    base = dir_fingerprint(path) if Path(path).is_dir() else None
    return {
        "spec": spec,
        "base": base,
        "adapter": dir_fingerprint(adapter) if adapter else None,
        "settings": dict(settings),
    }


def item_keys(
    identity: Mapping[str, Any],
    prompts: Sequence[Any],
    n: int,
    sampling: Any,
    fmt: str,
) -> list[str]:
    """Cache key of each prompt of one call (see the module doc); `sampling` is a Sampling, `fmt`
    names how prompts are sent (e.g. 'chat', 'raw', or a JSON schema's hash)."""
    from polyculture.backends.generation.base import derive_seed

    settings = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "min_new_tokens": sampling.min_new_tokens,
        "stop": list(sampling.stop),
    }
    base = request_key({"model": identity, "n": n, "sampling": settings, "format": fmt})
    return [
        request_key(
            {
                "call": base,
                "prompt": p,
                "seed": None if sampling.greedy else derive_seed(sampling.seed, i),
            }
        )
        for i, p in enumerate(prompts)
    ]


class AnswerCache:
    """Answers of finished calls under `root/<namespace>/` (one segment file per call)."""

    def __init__(self, root: str | os.PathLike[str], namespace: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", namespace).strip("._") or "model"
        self.dir = Path(root) / safe
        self._index: dict[str, list[Any]] = {}
        if self.dir.is_dir():
            for seg in sorted(self.dir.glob("*/*.json")):
                self._load(seg)

    def _load(self, seg: Path) -> None:
        try:
            data = json.loads(seg.read_text(encoding="utf-8"))
            keys, answers = data["keys"], data["answers"]
            if len(keys) != len(answers):
                raise ValueError("keys and answers differ in length")
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("answer cache: skipping unreadable segment %s (%s)", seg, err)
            return
        self._index.update(zip(keys, answers, strict=True))

    def __len__(self) -> int:
        return len(self._index)

    def get(self, keys: Sequence[str]) -> list[Any] | None:
        """The answers of every key, in order; None where any key is missing."""
        if all(k in self._index for k in keys):
            return [self._index[k] for k in keys]
        return None

    def put(self, keys: Sequence[str], answers: Sequence[Any]) -> None:
        """Store one call's answers (one segment file, written atomically)."""
        if len(keys) != len(answers):
            raise ValueError(f"{len(keys)} keys for {len(answers)} answers")
        if not keys:
            return
        name = request_key({"keys": list(keys)})
        path = self.dir / name[:2] / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(
            json.dumps({"keys": list(keys), "answers": list(answers)}, ensure_ascii=False), "utf-8"
        )
        os.replace(tmp, path)
        self._index.update(zip(keys, answers, strict=True))


@dataclass
class CacheStats:
    """Calls and items of a job: answered from the cache, and generated in this run."""

    calls_cached: int = 0
    calls_run: int = 0
    items_cached: int = 0
    items_generated: int = 0


def cached_call(
    cache: AnswerCache | None,
    keys: Sequence[str],
    run: Callable[[], list[Any]],
    stats: CacheStats | None = None,
) -> list[Any]:
    """The answers of one call: from the cache where every key is there, else `run()` (the
    whole call), stored before they are returned. Without a cache, `run()`."""
    stats = stats if stats is not None else CacheStats()
    if cache is not None:
        hit = cache.get(keys)
        if hit is not None:
            stats.calls_cached += 1
            stats.items_cached += len(keys)
            return hit
    answers = run()
    if len(answers) != len(keys):
        raise RuntimeError(f"call returned {len(answers)} answers for {len(keys)} prompts")
    stats.calls_run += 1
    stats.items_generated += len(keys)
    if cache is not None:
        cache.put(keys, answers)
    return answers


@dataclass(frozen=True)
class EngineCall:
    """One call of a job that serves several eval models from one engine: the adapter it runs
    under (a name the engine serves, or None: the base model), its item keys, and `run`, which
    answers it with the loaded generator."""

    adapter: str | None
    keys: Sequence[str]
    run: Callable[[Any], list[Any]]


def run_calls(
    open_engine: Callable[[], Any], calls: Sequence[EngineCall], cache: AnswerCache | None
) -> tuple[list[list[Any]], CacheStats]:
    """The answers of every call, in order, through the cache (:func:`cached_call`), the engine
    loaded by `open_engine()` at the first call that is not cached and asks anything (never
    where all are) and switched to each call's adapter where it serves several
    (Generator.use_adapter)."""
    stats = CacheStats()
    engine: list[Any] = []

    def run(call: EngineCall) -> list[Any]:
        if not call.keys:  # nothing to ask: no engine to load
            return []
        if not engine:
            engine.append(open_engine())
        if engine[0].adapters:
            engine[0].use_adapter(call.adapter)
        return call.run(engine[0])

    out = [cached_call(cache, c.keys, lambda c=c: run(c), stats) for c in calls]
    log.info(
        "answer cache: %d calls cached (%d items), %d calls run (%d items)",
        stats.calls_cached,
        stats.items_cached,
        stats.calls_run,
        stats.items_generated,
    )
    return out, stats


def generate_calls(
    open_engine: Callable[[], Any],
    identity: Mapping[str, Any],
    requests: Sequence[tuple[Sequence[Any], Any]],
    n: int,
    cache: AnswerCache | None,
    fmt: str = "chat",
) -> tuple[list[list[Any]], CacheStats]:
    """The replies to each request (conversations, Sampling): `n` samples per conversation of
    one model (cache identity `identity`), one Generator.generate call per request, through
    the cache (:func:`run_calls`: a request whose replies are all cached is not sent, and where
    none is missing the engine is not loaded); a request without conversations gets none."""
    calls = [
        EngineCall(
            None,
            item_keys(identity, convs, n, sampling, fmt),
            lambda g, c=convs, s=sampling: g.generate(list(c), n, s) if c else [],
        )
        for convs, sampling in requests
    ]
    return run_calls(open_engine, calls, cache)
