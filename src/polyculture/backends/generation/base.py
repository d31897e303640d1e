"""Text generation behind one interface (shared by the backends: `hf`, `vllm`, `openai`).

`polyculture.backends.load.load_generator(model, backend=...)` returns a `Generator` with

- `generate(conversations, n, sampling) -> list[list[str]]`: n samples per chat conversation,
  in input order;
- `generate_json(conversations, schema, n, sampling) -> list[list[dict | None]]`: the same under
  JSON-schema constrained decoding (xgrammar on hf, vLLM's structured outputs on vllm); an
  entry is None where the text does not parse or does not validate against the schema (e.g.
  cut off by max_new_tokens).

Sampling semantics shared by both backends:

- temperature 0 means greedy decoding; the n "samples" of a prompt are then n copies of one
  greedy continuation (computed once).
- Seeds are per prompt: prompt i of a call is seeded from (sampling.seed, i), so a prompt's
  samples do not depend on which other prompts share its batch or on the batch size.
  hf: each sampled row draws its own Gumbel noise from a generator seeded by
  (seed, prompt index, sample index); outputs are identical across batch sizes and prompt
  orders up to floating-point differences that padding can cause in the model's logits
  (bit-identical in our CPU float32 tests). vllm: each prompt gets SamplingParams(seed=...)
  derived from (seed, i); the two backends do not give the same samples for the same seed.
- min_new_tokens is honoured for free generation; for JSON generation it is ignored (the
  grammar decides where the object ends).
- Special tokens are stripped from the output, and so is surrounding whitespace.

Chat templates (``polyculture.backends.chat``): conversations are rendered by the model's own template;
a system turn is merged into the first user turn where the template rejects or drops it, a
tokenizer without a template gets ``chat.PLAIN_CHAT_TEMPLATE`` (or the config's
``backend.chat_template``), and generation stops at the template's end-of-turn tokens as well
as at EOS (and at the plain format's stop strings, which are cut from the text).

Raw prompts (`generate_raw`, hf and vllm): plain text sent as it is, without the chat template
and without the end-of-turn stops (EOS still ends it), for base models and raw completion.

Label scoring (`score_continuations`, hf backend): the log-probability of each candidate reply
to a conversation, for judges that pick a label by likelihood instead of generating it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
ROLES = ("system", "user", "assistant")

Conversation = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one generating stage; temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    # strings that end a response, dropped from the returned text (every backend: vLLM and the
    # OpenAI API drop a matched stop, and the hf backend cuts its text before it); not applied
    # to schema-constrained generation, whose JSON a stop could cut
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        stop = self.stop
        if not isinstance(stop, list | tuple) or not all(isinstance(x, str) and x for x in stop):
            raise ConfigError(
                "sampling.stop", f"expected a list of non-empty strings, got {stop!r}"
            )
        object.__setattr__(self, "stop", tuple(stop))
        checks = (
            ("temperature", self.temperature >= 0 and math.isfinite(self.temperature), ">= 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            (
                "min_new_tokens",
                0 <= self.min_new_tokens <= self.max_new_tokens,
                "in [0, max_new_tokens]",
            ),
            ("seed", self.seed >= 0, ">= 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"sampling.{name}", f"expected {expected}, got {getattr(self, name)!r}"
                )

    @property
    def greedy(self) -> bool:
        """Whether these settings mean greedy decoding."""
        return self.temperature == 0


_SAMPLING_KEYS = tuple(f.name for f in fields(Sampling) if f.name != "seed")


def sampling_from_config(d: Mapping[str, Any], seed: int, *, key: str = "sampling") -> Sampling:
    """Sampling settings from a config section (temperature/top_p/max_new_tokens/min_new_tokens/
    stop) and a seed; unknown keys and bad values fail naming the key."""
    unknown = sorted(set(d) - set(_SAMPLING_KEYS))
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}",
            f"unknown sampling key; expected one of {', '.join(_SAMPLING_KEYS)}",
        )
    try:
        return Sampling(**{k: d[k] for k in _SAMPLING_KEYS if k in d}, seed=int(seed))
    except ConfigError as err:
        raise ConfigError(err.key.replace("sampling", key, 1), str(err).split(": ", 1)[1]) from None


def derive_seed(*parts: int, bits: int = 63) -> int:
    """A well-mixed non-negative seed of `bits` bits from integer parts (seed, index, ...)."""
    import numpy as np

    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << bits) - 1)


def check_conversations(conversations: Sequence[Conversation]) -> list[list[dict[str, str]]]:
    """Conversations as plain lists of {role, content} dicts; fails naming the first bad one."""
    out: list[list[dict[str, str]]] = []
    if isinstance(conversations, str | bytes) or not isinstance(conversations, Sequence):
        raise InputError("conversations", "expected a list of conversations (lists of messages)")
    for i, conv in enumerate(conversations):
        if isinstance(conv, str | bytes) or not isinstance(conv, Sequence) or not conv:
            raise InputError(f"conversation {i}", "expected a non-empty list of messages")
        messages = []
        for j, msg in enumerate(conv):
            if not isinstance(msg, Mapping):
                raise InputError(
                    f"conversation {i}, message {j}", "expected a {role, content} dict"
                )
            role, content = msg.get("role"), msg.get("content")
            if role not in ROLES:
                raise InputError(
                    f"conversation {i}, message {j}",
                    f"role {role!r} is not one of {', '.join(ROLES)}",
                )
            if not isinstance(content, str):
                raise InputError(f"conversation {i}, message {j}", "content must be a string")
            messages.append({"role": role, "content": content})
        out.append(messages)
    return out


def check_schema(schema: Mapping[str, Any]) -> Any:
    """A jsonschema validator for `schema`; fails when the schema itself is invalid."""
    import jsonschema

    if not isinstance(schema, Mapping):
        raise InputError("schema", "expected a JSON schema (a mapping)")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise InputError("schema", f"not a valid JSON schema: {err.message}") from None
    return cls(schema)


def parse_json_output(text: str, validator: Any) -> dict | None:
    """The JSON object in `text` if it parses (control characters allowed inside strings) and
    validates against the schema; None otherwise."""
    try:
        value = json.loads(text, strict=False)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or not validator.is_valid(value):
        return None
    return value


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError("n", f"number of samples per prompt must be an integer >= 1, got {n!r}")


def check_dtype(dtype: str) -> None:
    """Fail naming `backend.dtype` unless `dtype` is one of DTYPES."""
    if dtype not in DTYPES:
        raise ConfigError(
            "backend.dtype", f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}"
        )


def torch_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for a dtype name; 'auto' is bfloat16 on CUDA and float32 elsewhere."""
    import torch

    check_dtype(dtype)
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, dtype)


def local_adapter(adapter: str | None) -> str | None:
    """A PEFT adapter as a local directory: a directory as it is (`~` expanded); a hub adapter id
    as its snapshot in the Hugging Face cache (filled by the prefetch rules; offline jobs read it
    from there), so that every loader (PEFT, vLLM LoRA requests, the tokenizer and chat template
    an adapter ships) sees files."""
    if not adapter:
        return adapter
    path = Path(adapter).expanduser()
    if path.is_dir():
        return str(path)
    from huggingface_hub import snapshot_download

    return snapshot_download(adapter, repo_type="model")


def tokenizer_source(model: str, adapter: str | None) -> str:
    """Where the tokenizer of `model` (with an optional PEFT adapter) is read from: the adapter
    directory when it has a tokenizer of its own, else the model."""
    return adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model


def adapter_chat_template(adapter: str | None) -> str | None:
    """The chat template an adapter directory ships as `chat_template.jinja` beside no tokenizer
    of its own (a tokenizer it ships carries its template: :func:`tokenizer_source`), else
    None."""
    if not adapter or (Path(adapter) / "tokenizer_config.json").is_file():
        return None
    path = Path(adapter) / "chat_template.jinja"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def adapter_embedding_rows(adapter: str | None) -> int | None:
    """Rows (the vocabulary size) of the full embedding or output layer a PEFT adapter saved,
    read from its safetensors header; None where it saved none. PEFT saves these layers whole
    when the vocabulary was resized for training (added tokens), and the base model must be
    resized to them before the adapter loads."""
    path = Path(adapter) / "adapter_model.safetensors" if adapter else None
    if path is None or not path.is_file():
        return None
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    rows = [
        int(v["shape"][0])
        for k, v in header.items()
        if k != "__metadata__" and k.endswith(("embed_tokens.weight", "lm_head.weight"))
    ]
    return max(rows) if rows else None


def resize_for_adapter(lm: Any, adapter: str | None) -> None:
    """Resize a loaded model's embeddings to the vocabulary an adapter saved (no-op where the
    adapter saved no embedding layer or the sizes agree)."""
    rows = adapter_embedding_rows(adapter)
    if rows is not None and rows != lm.get_input_embeddings().weight.shape[0]:
        log.info("resizing the embeddings to the adapter's %d-token vocabulary", rows)
        lm.resize_token_embeddings(rows)


def adapter_provenance(model: str, adapter: str | None) -> dict[str, Any]:
    """What an adapter changes beyond its LoRA weights, as the loaders apply it: the tokenizer
    and chat template (the adapter's own or the base model's) and the resized vocabulary (None
    where not resized)."""
    if not adapter:
        return {}
    own_tokenizer = tokenizer_source(model, adapter) == adapter
    template = own_tokenizer and bool(_tokenizer_has_template(adapter))
    return {
        "adapter": str(adapter),
        "tokenizer": "adapter" if own_tokenizer else "base model",
        "chat_template": "adapter"
        if template or adapter_chat_template(adapter) is not None
        else "base model",
        "embedding_rows": adapter_embedding_rows(adapter),
    }


#: Where an eval model's adapter comes from, by polyculture.config_eval.adapter_kind.
ADAPTER_SOURCES = {
    "variant": "trained by this workflow",
    "directory": "a PEFT directory from outside this workflow",
    "hub": "a Hugging Face Hub adapter",
}


def adapter_record(m: Mapping[str, Any]) -> dict[str, Any]:
    """How an eval model was loaded, as its results state it (`m`: its load settings: model,
    adapter, and `source`, the adapter's kind of :data:`ADAPTER_SOURCES`): the model, the
    adapter (None without one), where the adapter came from, and what it changes beyond its
    LoRA weights (:func:`adapter_provenance`)."""
    adapter = m.get("adapter")
    if not adapter:
        return {"model": str(m["model"]), "adapter": None}
    return {
        "model": str(m["model"]),
        **adapter_provenance(m["model"], local_adapter(adapter)),
        "adapter": str(adapter),
        "adapter_source": m.get("source"),
    }


def adapter_load_notes(adapters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per eval model (name → its load settings: model, adapter, optional `source`)
    whose adapter brings its own tokenizer, chat template or resized embeddings, saying that it
    was loaded with them (:func:`adapter_provenance`), and per adapter from outside this
    workflow (`source` directory or hub), saying so; the workflow's own adapters that bring
    nothing get no line."""
    notes = []
    for name, m in adapters.items():
        if not m.get("adapter"):
            continue
        prov = adapter_record(m)
        brings = [
            f"its own {what}"
            for what in ("tokenizer", "chat_template")
            if prov.get(what) == "adapter"
        ]
        if prov.get("embedding_rows") is not None:
            brings.append(f"embeddings resized to its {prov['embedding_rows']}-token vocabulary")
        outside = m.get("source") in ("directory", "hub")
        where = f" ({ADAPTER_SOURCES[m['source']]})" if outside else ""
        if brings:
            said = ", ".join(b.replace("chat_template", "chat template") for b in brings)
            notes.append(f"{name}: adapter {m['adapter']}{where} loaded with {said}")
        elif outside:
            notes.append(
                f"{name}: adapter {m['adapter']}{where} loaded with the base model's tokenizer "
                "and chat template"
            )
    return notes


def _tokenizer_has_template(directory: str) -> bool:
    """Whether a tokenizer directory carries a chat template (file or tokenizer_config key)."""
    d = Path(directory)
    if (d / "chat_template.jinja").is_file() or (d / "chat_template.json").is_file():
        return True
    cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    return bool(cfg.get("chat_template"))


def load_tokenizer(source: str) -> Any:
    """The tokenizer of a local directory or hub id (a directory is never looked up online)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=Path(source).is_dir())


@dataclass(frozen=True)
class LoadOptions:
    """How a generation backend loads a model: a PEFT adapter (merged into the weights if
    merge_adapter), batch size (hf), dtype, a chat template for tokenizers without one, the
    config's backend.openai section (openai) and engine options (vllm: passed to vllm.LLM, a
    `vllm_` prefix dropped)."""

    adapter: str | None = None
    merge_adapter: bool = False
    # several PEFT adapters served by one engine (name -> local directory), switched with
    # Generator.use_adapter; not with `adapter` or merge_adapter
    adapters: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 16
    dtype: str = "auto"
    chat_template: str | None = None
    openai: Mapping[str, Any] | None = None
    engine: Mapping[str, Any] = field(default_factory=dict)


class Generator:
    """A loaded chat model that samples continuations of conversations."""

    backend: str = ""

    def __init__(
        self, model: str, adapter: str | None, adapters: Mapping[str, str] | None = None
    ) -> None:
        self.model = model
        self.adapter = adapter
        #: adapters this engine serves by name (several: see use_adapter); the active one's name
        self.adapters: dict[str, str] = dict(adapters or {})
        self.active_adapter: str | None = None
        if adapter and self.adapters:
            raise ConfigError("adapters", "give one adapter or several by name, not both")

    def use_adapter(self, name: str | None) -> None:
        """Answer with the adapter served under `name` from now on; None: the base model alone.
        Only where the generator was loaded with several adapters (`adapters=`)."""
        if name is not None and name not in self.adapters:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise InputError("adapter", f"{name!r} is not served by this engine (serving: {known})")
        self._switch(name)
        self.active_adapter = name

    def _switch(self, name: str | None) -> None:
        if self.adapters:
            raise ConfigError(
                "backend.generation",
                f"serving several adapters is implemented on the hf and vllm backends, not on "
                f"'{self.backend}'",
            )

    def generate(
        self, conversations: Sequence[Conversation], n: int, sampling: Sampling
    ) -> list[list[str]]:
        """n sampled replies to each conversation, in input order."""
        convs = check_conversations(conversations)
        _check_n(n)
        if not convs:
            return []
        return self._generate(convs, n, sampling, None)

    def generate_json(
        self,
        conversations: Sequence[Conversation],
        schema: Mapping[str, Any],
        n: int,
        sampling: Sampling,
    ) -> list[list[dict | None]]:
        """n JSON-schema constrained replies per conversation, parsed; None where a reply does not
        parse or validate (e.g. cut off at max_new_tokens)."""
        convs = check_conversations(conversations)
        _check_n(n)
        validator = check_schema(schema)
        if not convs:
            return []
        texts = self._generate(convs, n, sampling, dict(schema))
        return [[parse_json_output(t, validator) for t in row] for row in texts]

    def generate_raw(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[str]]:
        """n sampled continuations of each plain-text prompt, sent as it is: no chat template and
        no end-of-turn stops (base models, raw completion), in input order."""
        if isinstance(prompts, str) or not all(isinstance(p, str) and p for p in prompts):
            raise InputError("raw prompts", "expected a sequence of non-empty strings")
        _check_n(n)
        if not prompts:
            return []
        return self._generate_raw(list(prompts), n, sampling)

    def _generate(
        self,
        convs: list[list[dict[str, str]]],
        n: int,
        sampling: Sampling,
        schema: dict[str, Any] | None,
    ) -> list[list[str]]:
        raise NotImplementedError

    def _generate_raw(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[str]]:
        raise ConfigError(
            "backend.generation",
            f"raw (untemplated) prompts are implemented on the hf and vllm backends, not on "
            f"'{self.backend}'",
        )

    def score_continuations(
        self, conversations: Sequence[Conversation], continuations: Sequence[str]
    ) -> list[list[float]]:
        """The log-probability of each continuation as the assistant's reply to each
        conversation (summed over its tokens): one row per conversation, one column per
        continuation."""
        raise ConfigError(
            "backend.generation",
            f"label scoring by log-probability is implemented on the hf backend, not on "
            f"'{self.backend}'",
        )

    def close(self) -> None:
        """Free the model (and any temporary files)."""


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank of a PEFT adapter directory (r and any rank_pattern entries)."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise InputError(adapter, "not a PEFT adapter directory (no adapter_config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    ranks = [int(cfg.get("r", 8)), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]]
    return max(ranks)


def adapter_brings(adapter: str) -> list[str]:
    """What a PEFT adapter directory brings beyond LoRA weights, which an engine shared with
    other adapters cannot apply per adapter: its own tokenizer, a chat template file, or whole
    embedding / output layers (saved by PEFT when the vocabulary was resized for training)."""
    root = Path(adapter)
    brings = [
        what
        for what, name in (
            ("tokenizer", "tokenizer_config.json"),
            ("chat template", "chat_template.jinja"),
        )
        if (root / name).is_file()
    ]
    weights = root / "adapter_model.safetensors"
    if weights.is_file():
        with weights.open("rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        if any(k.endswith(("embed_tokens.weight", "lm_head.weight")) for k in header):
            brings.append("embedding layers")
    return brings


def check_shared_tokenizer(adapters: Mapping[str, str]) -> None:
    """Fail unless every adapter of a multi-adapter engine is LoRA weights alone (nothing that
    :func:`adapter_brings` finds): such an adapter needs an engine of its own, which
    polyculture.backends.open.engine_plans gives it."""
    for name, path in adapters.items():
        adapter_rank(path)  # fails early unless it is a PEFT adapter directory
        brings = adapter_brings(path)
        if brings:
            raise InputError(
                path,
                f"adapter {name!r} brings its own {', '.join(brings)}; an engine serving several "
                "adapters has the base model's (serve this one alone)",
            )


def merge_adapter_to_dir(model: str, adapter: str, dest: str, dtype: str = "auto") -> str:
    """Merge a PEFT adapter into its base model and save model + tokenizer under `dest`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = AutoModelForCausalLM.from_pretrained(
        model, dtype=torch_dtype(dtype, device), local_files_only=Path(model).is_dir()
    )
    resize_for_adapter(lm, adapter)
    lm = PeftModel.from_pretrained(lm, adapter, local_files_only=True).merge_and_unload()
    lm.save_pretrained(dest)
    tokenizer = load_tokenizer(tokenizer_source(model, adapter))
    template = adapter_chat_template(adapter)
    if template is not None:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(dest)
    del lm
    return dest
