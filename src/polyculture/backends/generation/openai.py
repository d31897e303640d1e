"""The `openai` generation backend: any OpenAI-compatible chat-completions endpoint (OpenAI's API,
`vllm serve`, SGLang, TGI, llama.cpp's server, ...) behind the Generator interface of
polyculture.backends.generation.base, with every reply cached on disk.

Model specs. `openai:<model>` is `<model>` on the default endpoint of the config's
`backend.openai` section (base_url, api_key_env); `openai@<name>:<model>` is `<model>` on the named
endpoint `backend.openai.endpoints.<name>`; `openai@<url>:<model>` is `<model>` on the server at
that URL (polyculture.backends.spec says where the URL ends), with the default endpoint's key
variable, sent only where it is set. The key is read from the environment variable whose
*name* the config gives; it is never written to a config, log, cache entry or output.

Requests. One request per (conversation, sample): temperature, top_p, max_tokens, stop and a seed
derived from (sampling.seed, prompt index, sample index), like the vllm backend's per-prompt seeds.
Greedy settings (temperature 0) send one request per conversation and repeat its reply n times,
as the local backends do. One request per sample, not `n` samples per request, so that every
sample has its own cache entry (a rerun with more samples reuses the first ones, and a sample is
the same whatever n is); on a hosted API it bills the prompt once per sample.

JSON. `generate_json` sends the schema as `response_format: json_schema` (vLLM's and OpenAI's
structured outputs); a server that refuses it with a 400 naming response_format is asked again
without it for the rest of the job (logged), and every reply is validated against the schema
either way: a reply that does not parse or validate is None, which the stages count as a drop.

Cache. Each reply is a JSON file under `cache_dir/<model>/<xx>/<sha256>.json`, keyed by the hash of
(endpoint URL, model, messages, sampling settings, seed, sample index, response format), written
atomically (temporary file, then rename) as soon as it arrives. A rerun after a crash, a kill or a
dead server sends only the requests whose files are missing. The same model name behind two URLs
gets two sets of replies. (Entries written before the URL was part of the key, until 2026-12, are
not matched: such a run asks its requests once more.)

Failures. 408, 409, 429 and 5xx replies, timeouts and connection errors are retried with
exponential backoff and jitter, waiting what a `Retry-After` / `retry-after-ms` header asks where
there is one; past the retry budget, or on any other status, the job fails with an ApiError that
names the endpoint, the model, the last status and the server's message; the replies that arrived
before stay in the cache.

Usage. Token counts (prompt, completion) of every reply are kept in its cache entry; a generator
given a `usage_path` writes there, after every call, the requests, cache hits and tokens of this
job: all of them (what the outputs cost) and the ones sent in this run (what this run was billed).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from polyculture.backends.answer_cache import request_key
from polyculture.backends.generation.base import Generator, LoadOptions, derive_seed
from polyculture.backends.ratelimit import RateLimiter
from polyculture.backends.registry import GENERATORS
from polyculture.backends.spec import API_PROVIDER, parse_api_spec
from polyculture.errors import ConfigError, PolycultureError

log = logging.getLogger(__name__)

API_BACKEND = API_PROVIDER
RETRY_STATUSES = (408, 409, 429)
STRUCTURED_MODES = ("json_schema", "none")
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")

# Defaults of the config's backend.openai section (schemas/config-backend.schema.yaml says the same)
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # OpenAI's own API (the openai client's default)
DEFAULT_KEY_ENV = "OPENAI_API_KEY"  # the variable the openai client itself reads
# 8 requests in flight keep a vLLM server's batch busy and stay, at ~1 s a request, near OpenAI's
# tier-1 limit of 500 requests/minute; raise it for a large server or a higher tier.
DEFAULT_CONCURRENCY = 8
# 6 retries at 1, 2, 4, 8, 16, 32 s (capped at 60 s) span a minute: OpenAI's rate limits are
# per minute, so a 429 burst is waited out rather than failing the job.
DEFAULT_RETRIES = 6
DEFAULT_BACKOFF_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0
_URL = re.compile(r"^https?://", re.IGNORECASE)
DEFAULT_TIMEOUT_S = 600.0  # the openai client's own default read timeout (10 minutes)


class ApiError(PolycultureError):
    """An API endpoint failed a request for good (retry budget spent, or a non-retriable status)."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the base URL and the *name* of the variable holding the key."""

    base_url: str
    api_key_env: str | None
    #: an endpoint written as a URL in the spec sends the key only where its variable is set
    key_optional: bool = False
    #: the endpoint's limits (None: none); the config key that sets them names them in errors
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    limits_key: str = "backend.openai"

    def api_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The key from the environment; servers without authentication get a placeholder."""
        env = os.environ if environ is None else environ
        if not self.api_key_env:
            return "EMPTY"  # the openai client needs some key; vLLM without --api-key ignores it
        key = env.get(self.api_key_env, "").strip()
        if not key and self.key_optional:
            return "EMPTY"
        if not key:
            raise ConfigError(
                "backend.openai.api_key_env",
                f"the endpoint {self.base_url} needs an API key in the environment variable "
                f"{self.api_key_env}, which is not set (keys are never read from the config)",
            )
        return key


@dataclass(frozen=True)
class ApiSettings:
    """The config's backend.openai section."""

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = DEFAULT_KEY_ENV
    endpoints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    structured_output: str = "json_schema"
    max_tokens_param: str = "max_tokens"
    cache_dir: str | None = None
    usage_path: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        checks = (
            ("max_concurrency", self.max_concurrency >= 1, ">= 1"),
            ("max_retries", self.max_retries >= 0, ">= 0"),
            ("backoff_s", self.backoff_s >= 0, ">= 0"),
            ("backoff_max_s", self.backoff_max_s >= self.backoff_s, ">= backoff_s"),
            ("timeout_s", self.timeout_s > 0, "> 0"),
            ("structured_output", self.structured_output in STRUCTURED_MODES, STRUCTURED_MODES),
            ("max_tokens_param", self.max_tokens_param in MAX_TOKENS_PARAMS, MAX_TOKENS_PARAMS),
            ("requests_per_minute", _positive_or_none(self.requests_per_minute), "> 0 or null"),
            ("tokens_per_minute", _positive_or_none(self.tokens_per_minute), "> 0 or null"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"backend.openai.{name}", f"expected {expected}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ApiSettings:
        """Settings from a backend.openai mapping (unknown keys fail naming the key)."""
        section = dict(section or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"backend.openai.{unknown[0]}", "unknown key")
        return cls(**section)

    def endpoint(self, name: str | None) -> Endpoint:
        """The default endpoint (name None), a named one, or a URL written in the spec (its key,
        if the server wants one, from the default endpoint's api_key_env variable); fails naming
        the spec's endpoint and both ways to write one."""
        limits = {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
        }
        if name is None:
            return Endpoint(self.base_url, self.api_key_env, **limits)
        if _URL.match(name):
            return Endpoint(name, self.api_key_env, key_optional=True, **limits)
        if name not in self.endpoints:
            raise ConfigError(
                "backend.openai.endpoints",
                f"no endpoint named '{name}'; configured: "
                f"{', '.join(sorted(self.endpoints)) or 'none'}. Name one under "
                f"backend.openai.endpoints (openai@<name>:<model>) or write its URL in the spec "
                f"(openai@http://host:port/v1:<model>)",
            )
        ep = self.endpoints[name]
        key = f"backend.openai.endpoints.{name}"
        for limit in limits:
            if not _positive_or_none(ep.get(limit)):
                raise ConfigError(f"{key}.{limit}", f"expected > 0 or null, got {ep[limit]!r}")
        return Endpoint(
            ep["base_url"],
            ep.get("api_key_env", DEFAULT_KEY_ENV),
            requests_per_minute=ep.get("requests_per_minute"),
            tokens_per_minute=ep.get("tokens_per_minute"),
            limits_key=key,
        )


def _positive_or_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    )


def estimated_tokens(body: Mapping[str, Any]) -> int:
    """Tokens a chat-completions request may cost, before it is sent: its messages' characters
    / 4 (OpenAI's rule of thumb for English text; the reply's reported usage corrects the
    estimate afterwards) plus its token budget (OpenAI counts max_tokens against the
    tokens-per-minute limit)."""
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
    budget = max(int(body.get(p) or 0) for p in MAX_TOKENS_PARAMS)
    return -(-chars // 4) + budget


def endpoint_of(spec: str, settings: ApiSettings) -> Endpoint:
    """The endpoint an API model spec names."""
    name, _ = parse_api_spec(spec)
    return settings.endpoint(name)


# ----------------------------------------------------------------------------------------------
# cache


class ReplyCache:
    """One JSON file per reply under `root/<model>/<xx>/<key>.json`, written atomically."""

    def __init__(self, root: str | os.PathLike[str], model: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._") or "model"
        self.dir = Path(root) / safe

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("unreadable cache entry %s: asking again", p)
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == key else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(
            json.dumps({**entry, "key": key}, ensure_ascii=False, sort_keys=True), "utf-8"
        )
        os.replace(tmp, p)


# ----------------------------------------------------------------------------------------------
# retries


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a reply's `retry-after-ms` / `Retry-After` header asks to wait, if any."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base * 2**attempt capped at `cap`, times U[0.5, 1)."""
    return min(cap, base * 2**attempt) * (0.5 + rng.random() / 2)


def _status_and_headers(err: Exception) -> tuple[int | None, Mapping[str, str] | None]:
    response = getattr(err, "response", None)
    status = getattr(err, "status_code", None) or getattr(response, "status_code", None)
    headers = getattr(response, "headers", None)
    return status, headers


def _short(err: Exception) -> str:
    """The server's own message where the error body has one, else the client's; shortened."""
    body = getattr(err, "body", None)
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    text = str(body["message"]) if isinstance(body, Mapping) and body.get("message") else ""
    text = text or str(getattr(err, "message", None) or err)
    return text if len(text) <= 300 else text[:297] + "..."


# ----------------------------------------------------------------------------------------------
# the generator


@dataclass
class Usage:
    """Requests and tokens of one job (all replies, and those sent in this run)."""

    replies: int = 0
    cache_hits: int = 0
    sent: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sent_prompt_tokens: int = 0
    sent_completion_tokens: int = 0

    def add(self, usage: Mapping[str, Any] | None, *, sent: bool) -> None:
        p = int((usage or {}).get("prompt_tokens") or 0)
        c = int((usage or {}).get("completion_tokens") or 0)
        self.replies += 1
        self.prompt_tokens += p
        self.completion_tokens += c
        if sent:
            self.sent += 1
            self.sent_prompt_tokens += p
            self.sent_completion_tokens += c
        else:
            self.cache_hits += 1


class OpenAIGenerator(Generator):
    """Chat completions of an OpenAI-compatible endpoint, cached on disk (see the module doc)."""

    backend = API_BACKEND

    def __init__(
        self,
        spec: str,
        settings: ApiSettings | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(spec, None)
        self.settings = (
            settings if isinstance(settings, ApiSettings) else ApiSettings.from_config(settings)
        )
        endpoint_name, self.model_name = parse_api_spec(spec)
        self.endpoint = self.settings.endpoint(endpoint_name)
        if self.settings.cache_dir is None:
            raise ConfigError(
                "backend.openai.cache_dir", "the openai backend needs a cache directory"
            )
        self.cache = ReplyCache(self.settings.cache_dir, self.model_name)
        self.structured = self.settings.structured_output
        self.usage = Usage()
        self._rng = random.Random()  # jitter only: never decides an output
        self._lock = threading.Lock()
        self.limiter = RateLimiter(
            self.endpoint.requests_per_minute,
            self.endpoint.tokens_per_minute,
            name=self.endpoint.limits_key,
            endpoint=self.endpoint.base_url,
        )
        if client is None:
            import openai

            client = openai.OpenAI(
                base_url=self.endpoint.base_url,
                api_key=self.endpoint.api_key(environ),
                max_retries=0,  # retries are ours: backoff with jitter, Retry-After, cache
                timeout=self.settings.timeout_s,
            )
        self.client = client
        log.info(
            "openai backend: model %s at %s (key from %s), %d concurrent requests, "
            "limits %s requests and %s tokens a minute, cache %s",
            self.model_name,
            self.endpoint.base_url,
            self.endpoint.api_key_env or "no key",
            self.settings.max_concurrency,
            self.endpoint.requests_per_minute or "no",
            self.endpoint.tokens_per_minute or "no",
            self.cache.dir,
        )

    # -- requests ------------------------------------------------------------------------------

    def _units(
        self,
        convs: list[list[dict[str, str]]],
        n: int,
        sampling: Any,
        schema: dict[str, Any] | None,
    ) -> list[tuple[int, int, dict[str, Any], str]]:
        """(prompt index, sample index, request body, cache key) of every request this call needs."""
        # sampling.stop, dropped from the text by the API (as by vLLM and the hf backend); not sent
        # with a schema, whose JSON a stop could cut (as the local backends do)
        stop = list(sampling.stop) if schema is None and sampling.stop else None
        units = []
        for i, conv in enumerate(convs):
            for j in range(1 if sampling.greedy else n):
                body: dict[str, Any] = {
                    "model": self.model_name,
                    "messages": conv,
                    "temperature": float(sampling.temperature),
                    "top_p": 1.0 if sampling.greedy else float(sampling.top_p),
                    self.settings.max_tokens_param: int(sampling.max_new_tokens),
                }
                if not sampling.greedy:
                    body["seed"] = derive_seed(sampling.seed, i, j, bits=31)
                if stop:
                    body["stop"] = stop
                if schema is not None and self.structured == "json_schema":
                    body["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": "output", "schema": schema, "strict": True},
                    }
                key = request_key(
                    {"body": body, "sample": j, "schema": schema, "url": self.endpoint.base_url}
                )
                units.append((i, j, body, key))
        return units

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion with retries; the cache entry of its reply."""
        import openai

        attempts = self.settings.max_retries + 1
        last = ""
        cost = estimated_tokens(body)
        for attempt in range(attempts):
            self.limiter.acquire(cost)
            try:
                resp = self.client.chat.completions.create(**body)
                choice = resp.choices[0]
                usage = resp.usage.model_dump() if resp.usage is not None else {}
                used = int(usage.get("prompt_tokens") or 0) + int(
                    usage.get("completion_tokens") or 0
                )
                if used:
                    self.limiter.settle(cost, used)
                return {
                    "text": (choice.message.content or "").strip(),
                    "finish_reason": choice.finish_reason,
                    "server_model": resp.model,
                    "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")},
                }
            except openai.APIStatusError as err:
                status, headers = _status_and_headers(err)
                last = f"status {status}: {_short(err)}"
                if status not in RETRY_STATUSES and not (status and status >= 500):
                    raise ApiError(
                        f"{self.endpoint.base_url}: model '{self.model_name}': request refused "
                        f"with {last}"
                    ) from None
                wait_s = retry_after_s(headers)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                last = f"{type(err).__name__}: {_short(err)}"
                wait_s = None
            except (
                openai.APIResponseValidationError,
                json.JSONDecodeError,
                AttributeError,
                IndexError,
                TypeError,
            ) as err:  # a 200 whose body is not a chat completion (no choices, not JSON, ...)
                last = f"malformed reply ({type(err).__name__}: {_short(err)})"
                wait_s = None
            if attempt + 1 == attempts:
                break
            delay = (
                wait_s
                if wait_s is not None
                else backoff_delay(
                    attempt, self.settings.backoff_s, self.settings.backoff_max_s, self._rng
                )
            )
            log.warning(
                "%s: %s; retry %d/%d in %.1f s",
                self.endpoint.base_url,
                last,
                attempt + 1,
                self.settings.max_retries,
                delay,
            )
            with self._lock:
                self.usage.retries += 1
            time.sleep(delay)
        raise ApiError(
            f"{self.endpoint.base_url}: model '{self.model_name}': request failed after "
            f"{attempts} attempts; last {last}. Replies received so far are cached in "
            f"{self.cache.dir}: rerun to send only the missing requests"
        )

    def _fetch(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        entry = self._send(body)
        self.cache.put(key, entry)
        with self._lock:
            self.usage.add(entry.get("usage"), sent=True)
        return entry

    def _run(self, units: list[tuple[int, int, dict[str, Any], str]]) -> dict[str, dict[str, Any]]:
        """Replies of every unit by key: cached ones read, missing ones sent concurrently."""
        from tqdm import tqdm

        replies: dict[str, dict[str, Any]] = {}
        missing: dict[str, dict[str, Any]] = {}
        for _, _, body, key in units:
            if key in replies or key in missing:
                continue
            entry = self.cache.get(key)
            if entry is None:
                missing[key] = body
            else:
                replies[key] = entry
                self.usage.add(entry.get("usage"), sent=False)
        log.info(
            "openai backend: %d requests, %d from the cache, %d to send",
            len(units),
            len(replies),
            len(missing),
        )
        if not missing:
            return replies
        bar = tqdm(total=len(missing), desc="requests (openai)", unit="req", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency) as pool:
            futures = {pool.submit(self._fetch, body, key): key for key, body in missing.items()}
            pending = set(futures)
            error: BaseException | None = None
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        error = error or exc
                    else:
                        replies[futures[fut]] = fut.result()
                        bar.update(1)
                if error is not None:
                    # stop sending; requests already in flight finish and are cached
                    for fut in pending:
                        fut.cancel()
                    for fut in pending:
                        if not fut.cancelled() and fut.exception() is None:
                            replies[futures[fut]] = fut.result()
                    break
        bar.close()
        if self.limiter.waited_s:
            log.info(
                "openai backend: %.1f s waited for the endpoint's rate limits",
                self.limiter.waited_s,
            )
        if error is not None:
            raise error
        return replies

    def _maybe_fall_back(self, err: ApiError, schema: dict[str, Any] | None) -> bool:
        """Whether a refused request was about response_format (then JSON goes unconstrained)."""
        text = str(err)
        if schema is None or self.structured != "json_schema" or "status 400" not in text:
            return False
        if not re.search(r"response_format|json_schema|structured", text, re.IGNORECASE):
            return False
        log.warning(
            "%s does not take response_format json_schema (%s); asking without it and "
            "validating the replies against the schema",
            self.endpoint.base_url,
            text,
        )
        self.structured = "none"
        return True

    def _generate(
        self,
        convs: list[list[dict[str, str]]],
        n: int,
        sampling: Any,
        schema: dict[str, Any] | None,
    ) -> list[list[str]]:
        if sampling.min_new_tokens:
            log.warning(
                "openai backend: min_new_tokens=%d is not part of the chat-completions API; "
                "not sent",
                sampling.min_new_tokens,
            )
        try:
            units = self._units(convs, n, sampling, schema)
            try:
                replies = self._run(units)
            except ApiError as err:
                if not self._maybe_fall_back(err, schema):
                    raise
                units = self._units(convs, n, sampling, schema)
                replies = self._run(units)
        finally:
            self.write_usage()
        out: list[list[str]] = [[] for _ in convs]
        for i, _, _, key in units:
            out[i].append(replies[key]["text"])
        return [row * n if sampling.greedy else row for row in out]

    # -- usage ---------------------------------------------------------------------------------

    def usage_record(self) -> dict[str, Any]:
        """This job's usage (no key, no URL credentials)."""
        return {
            "backend": API_BACKEND,
            "model": self.model_name,
            "spec": self.model,
            "base_url": self.endpoint.base_url,
            **self.usage.__dict__,
        }

    def write_usage(self) -> None:
        if not self.settings.usage_path:
            return
        from polyculture.io import write_json

        write_json(self.usage_record(), self.settings.usage_path)

    def close(self) -> None:
        self.write_usage()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


@GENERATORS.register(API_BACKEND, selectable=False)
def load_openai(model: str, options: LoadOptions) -> OpenAIGenerator:
    """An OpenAIGenerator for an API model spec, with the config's backend.openai settings; an
    API model takes no adapter."""
    if options.adapter:
        raise ConfigError("adapter", f"'{model}' is an API model: it cannot load a LoRA adapter")
    return OpenAIGenerator(model, options.openai)


def usage_path_for(output: str | os.PathLike[str]) -> str:
    """Where a job writing `output` keeps its API usage: beside it."""
    return f"{output}.api-usage.json"


def summarize_usage(
    paths: list[str | os.PathLike[str]],
    results: str,
    rules: Mapping[str, str] | None = None,
) -> Any:
    """One row per rule and model, summed over that rule's jobs, plus a TOTAL row: replies, cache
    hits, requests sent, retries, tokens. A usage file belongs to the rule whose first-output
    regular expression (`rules`: name → regex, paths relative to the working directory) matches
    the output it sits beside (the most specific one: longest regex); a file no rule claims is
    labelled by its output folder under `results`."""
    import polars as pl

    compiled = sorted(
        ((name, re.compile(rx)) for name, rx in (rules or {}).items()),
        key=lambda item: -len(item[1].pattern),
    )
    rows = []
    for p in paths:
        rec = json.loads(Path(p).read_text(encoding="utf-8"))
        output = str(p).removesuffix(".api-usage.json")
        rel_out = os.path.relpath(output)
        rule = next((name for name, rx in compiled if rx.match(rel_out)), None)
        if rule is None:
            parts = Path(os.path.relpath(Path(p).parent, results)).parts
            rule = "/".join(parts[:2]) if parts else "."
        rows.append({"rule": rule, **{k: rec[k] for k in _USAGE_COLUMNS if k in rec}})
    schema = {"rule": pl.String, "model": pl.String, "base_url": pl.String} | {
        k: pl.Int64 for k in _USAGE_COLUMNS[2:]
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    df = pl.DataFrame(rows, schema=schema)
    counts = _USAGE_COLUMNS[2:]
    per = (
        df.group_by(["rule", "model", "base_url"])
        .agg([pl.col(c).sum() for c in counts])
        .sort(["rule", "model"])
    )
    total = per.select([pl.col(c).sum() for c in counts]).with_columns(
        rule=pl.lit("TOTAL"), model=pl.lit("all"), base_url=pl.lit("all")
    )
    return pl.concat([per, total.select(per.columns)])


_USAGE_COLUMNS = (
    "model",
    "base_url",
    "replies",
    "cache_hits",
    "sent",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "sent_prompt_tokens",
    "sent_completion_tokens",
)
