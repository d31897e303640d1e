"""Text generation behind one interface: a transformers (`hf`) and a vLLM (`vllm`) backend.

`load_generator(model, backend=...)` returns a `Generator` with

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

import importlib.util
import json
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from polyculture.backends.chat import cut_at_stop_strings
from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
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


def vllm_available() -> bool:
    """Whether vllm is importable here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str) -> str:
    """'hf' or 'vllm' for a backend name; 'auto' is vllm where importable and CUDA is present."""
    if backend not in BACKENDS:
        raise ConfigError(
            "backend.generation",
            f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}",
        )
    if backend != "auto":
        return backend
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "hf"


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


def tokenizer_source(model: str, adapter: str | None) -> str:
    """Where the tokenizer of `model` (with an optional PEFT adapter) is read from: the adapter
    directory when it has a tokenizer of its own, else the model."""
    return adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model


def load_tokenizer(source: str) -> Any:
    """The tokenizer of a local directory or hub id (a directory is never looked up online)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=Path(source).is_dir())


def generator_kwargs(backend_config: Mapping[str, Any]) -> dict[str, Any]:
    """load_generator keyword arguments from the config's `backend:` section."""
    kwargs: dict[str, Any] = {}
    if "generation" in backend_config:
        kwargs["backend"] = backend_config["generation"]
    for key in ("batch_size", "dtype", "chat_template"):
        if key in backend_config:
            kwargs[key] = backend_config[key]
    for key, value in backend_config.items():
        if key.startswith("vllm_"):
            kwargs[key] = value
    if backend_config.get("openai") is not None:
        kwargs["openai"] = backend_config["openai"]
    return kwargs


class Generator:
    """A loaded chat model that samples continuations of conversations."""

    backend: str = ""

    def __init__(self, model: str, adapter: str | None) -> None:
        self.model = model
        self.adapter = adapter

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


# ----------------------------------------------------------------------------------------------
# hf backend


TOP_P_CANDIDATES = 64


def top_p_keep(probs: Any, top_p: float, candidates: int = TOP_P_CANDIDATES) -> Any:
    """Boolean mask of the nucleus of each row of `probs` (rows of probabilities): the most
    probable tokens whose preceding mass, in descending order, is below `top_p` (so at least the
    most probable one). Tie rule: every token as probable as the least probable kept token is
    kept too, so the mask does not depend on how a sort orders equal values.

    The cut is looked for among the `candidates` most probable tokens of each row; only rows whose
    nucleus is larger than that are sorted in full."""
    import torch

    k = min(candidates, probs.shape[-1])
    vals = probs.topk(k, dim=-1).values
    cum = vals.cumsum(-1)
    wide = cum[:, -1] < top_p
    if bool(wide.any()):
        full = probs[wide].sort(dim=-1, descending=True).values
        widened = torch.zeros_like(probs)
        widened[:, :k] = vals
        widened[wide] = full
        vals, cum = widened, widened.cumsum(-1)
    kept = ((cum - vals) < top_p).sum(-1, keepdim=True)
    threshold = vals.gather(-1, kept - 1)
    return probs >= threshold


class _SeededSampler:
    """Last logits processor of the hf backend: temperature and top-p (`top_p_keep`), then
    Gumbel-max sampling with one random generator per row, returning a score row that is finite
    only at the sampled token, so that the greedy step of `generate` picks exactly that token.

    Row r of the batch is sample r % n of prompt r // n; its generator is seeded from
    (seed, global prompt index, sample index), so its draws do not depend on the batch."""

    def __init__(self, row_seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        import torch

        self.generators = []
        for s in row_seeds:
            g = torch.Generator(device=device)
            g.manual_seed(s)
            self.generators.append(g)
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"expected {len(self.generators)} rows, got {scores.shape[0]}")
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            keep = top_p_keep(scores.softmax(dim=-1), self.top_p)
            scores = scores.masked_fill(~keep, -math.inf)
        vocab = scores.shape[1]
        u = torch.stack(
            [
                torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float32)
                for g in self.generators
            ]
        )
        gumbel = -torch.log(-torch.log(u.clamp_(min=1e-20, max=1.0 - 1e-7)))
        choice = (scores + gumbel).argmax(dim=-1, keepdim=True)
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, choice, 0.0)
        return out


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the causal LM's forward takes `logits_to_keep` (transformers' models since 4.45;
    a peft wrapper passes it on to its base model)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class HFGenerator(Generator):
    """transformers backend: chat template, length-sorted batches with left padding, each prompt
    repeated n times in its batch, per-row seeded sampling, xgrammar for JSON schemas."""

    backend = "hf"

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        merge_adapter: bool = False,
        batch_size: int = 16,
        dtype: str = "auto",
        device: str | None = None,
        chat_template: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        from polyculture.backends.chat import analyze_template

        super().__init__(model, adapter)
        if batch_size < 1:
            raise ConfigError("backend.batch_size", f"expected >= 1, got {batch_size}")
        if adapter:
            adapter_rank(adapter)  # fails early unless it is a PEFT adapter directory
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch_dtype(dtype, self.device)
        local = Path(model).is_dir()
        tok_source = tokenizer_source(model, adapter)
        self.tokenizer = load_tokenizer(tok_source)
        self.chat_format = analyze_template(self.tokenizer, chat_template)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(
            model, dtype=self.dtype, device_map=self.device, local_files_only=local
        )
        eos = lm.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: list[int] = [eos] if isinstance(eos, int) else list(eos)
        # the template's end-of-turn tokens stop generation too (e.g. <end_of_turn> where the
        # model's config names only <eos>)
        self.eos_ids += [t for t in self.chat_format.end_of_turn_ids if t not in self.eos_ids]
        # a clean generation config: only the token ids survive from the model's own, so that its
        # sampling defaults (temperature, top_k, min_p, ...) never mix with ours
        lm.generation_config = GenerationConfig(
            bos_token_id=lm.generation_config.bos_token_id,
            eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if adapter:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter, local_files_only=True)
            if merge_adapter:
                lm = lm.merge_and_unload()
        self.lm = lm.to(self.device).eval()
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}

    def prompt_ids(self, convs: list[list[dict[str, str]]]) -> list[list[int]]:
        """Token ids of each conversation under the chat template, ready for the assistant turn."""
        from polyculture.backends.chat import render_prompts

        texts = render_prompts(self.tokenizer, convs, self.chat_format)
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def raw_prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each plain-text prompt as the tokenizer encodes text by default (its
        special tokens, e.g. BOS, included), as BLEnD's code does for base models."""
        return [self.tokenizer(p)["input_ids"] for p in prompts]

    def score_continuations(
        self, conversations: Sequence[Conversation], continuations: Sequence[str]
    ) -> list[list[float]]:
        import torch

        convs = check_conversations(conversations)
        if not continuations or any(not isinstance(c, str) or not c for c in continuations):
            raise InputError("continuations", "expected a list of non-empty strings")
        if not convs:
            return []
        prompts = self.prompt_ids(convs)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        pairs = [(i, j) for i in range(len(convs)) for j in range(len(conts))]
        scores = [[0.0] * len(conts) for _ in convs]
        pad = self.tokenizer.pad_token_id
        # left padding puts every continuation at the end: only the last positions' logits are
        # needed (a few of them, not prompt length x vocabulary, e.g. ~500 x 49,152 per row)
        keep = max(len(c) for c in conts) + 1
        extra = {"logits_to_keep": keep} if accepts_logits_to_keep(self.lm) else {}
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            seqs = [prompts[i] + conts[j] for i, j in batch]
            width = max(len(q) for q in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            attn = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, q in enumerate(seqs):  # left padding, as in generation
                ids[r, width - len(q) :] = torch.tensor(q)
                attn[r, width - len(q) :] = 1
            with torch.inference_mode():
                logits = self.lm(
                    input_ids=ids.to(self.device), attention_mask=attn.to(self.device), **extra
                ).logits.float()
            logp = logits.log_softmax(dim=-1)
            offset = width - logp.shape[1]  # position of logp's first row in the sequence
            for r, (i, j) in enumerate(batch):
                k = len(conts[j])
                pos = torch.arange(width - k - 1 - offset, width - 1 - offset, device=logp.device)
                target = ids[r, width - k :].to(logp.device)
                scores[i][j] = float(logp[r, pos, target].sum())
        return scores

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The compiled xgrammar grammar of a JSON schema (compiled once per schema)."""
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            if self._grammar_compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer,
                    vocab_size=self.lm.config.get_text_config().vocab_size,
                    stop_token_ids=self.eos_ids,
                )
                self._grammar_compiler = xgr.GrammarCompiler(info)
            self._grammars[key] = self._grammar_compiler.compile_json_schema(
                key, any_whitespace=False
            )
        return self._grammars[key]

    def _generate(
        self,
        convs: list[list[dict[str, str]]],
        n: int,
        sampling: Sampling,
        schema: dict[str, Any] | None,
    ) -> list[list[str]]:
        # the chat format's stop strings and the stage's own (sampling.stop), both cut from the text
        stops = [*self.chat_format.stop_strings, *sampling.stop] if schema is None else []
        return self._generate_ids(self.prompt_ids(convs), n, sampling, schema, stops)

    def _generate_raw(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[str]]:
        return self._generate_ids(self.raw_prompt_ids(prompts), n, sampling, None, [*sampling.stop])

    def _generate_ids(
        self,
        ids: list[list[int]],
        n: int,
        sampling: Sampling,
        schema: dict[str, Any] | None,
        stops: list[str],
    ) -> list[list[str]]:
        import torch
        from tqdm import tqdm
        from transformers import GenerationConfig

        order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
        rows = 1 if sampling.greedy else n
        grammar = self._grammar(schema) if schema is not None else None
        # always transformers' greedy search: in sampled mode the seeded sampler (the last logits
        # processor) leaves one finite score per row, so the argmax is its draw, and neither the
        # model's sampling defaults nor a second random draw (multinomial) come in
        gen_config = GenerationConfig(
            stop_strings=stops or None,
            max_new_tokens=sampling.max_new_tokens,
            min_new_tokens=sampling.min_new_tokens if schema is None else 0,
            do_sample=False,
            num_return_sequences=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        results: list[list[str]] = [[] for _ in ids]
        bar = tqdm(
            total=len(ids), desc=f"generate ({self.backend})", unit="prompt", file=sys.stderr
        )
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            enc = self.tokenizer.pad(
                {"input_ids": [ids[i] for i in batch for _ in range(rows)]},
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            processors: list[Any] = []
            if grammar is not None:
                import xgrammar as xgr

                processors.append(xgr.contrib.hf.LogitsProcessor(grammar))
            if not sampling.greedy:
                seeds = [derive_seed(sampling.seed, i, j) for i in batch for j in range(n)]
                processors.append(
                    _SeededSampler(seeds, sampling.temperature, sampling.top_p, self.device)
                )
            with torch.inference_mode():
                out = self.lm.generate(
                    **enc,
                    generation_config=gen_config,
                    logits_processor=processors,
                    **({"tokenizer": self.tokenizer} if stops else {}),
                )
            new = out[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for k, i in enumerate(batch):
                mine = [
                    cut_at_stop_strings(t, stops).strip() for t in texts[k * rows : (k + 1) * rows]
                ]
                results[i] = mine * n if sampling.greedy else mine
            bar.update(len(batch))
        bar.close()
        return results

    def close(self) -> None:
        import gc

        import torch

        del self.lm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# vllm backend

_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank of a PEFT adapter directory (r and any rank_pattern entries)."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise InputError(adapter, "not a PEFT adapter directory (no adapter_config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    ranks = [int(cfg.get("r", 8)), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]]
    return max(ranks)


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank `rank`."""
    for allowed in _VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise InputError("adapter", f"LoRA rank {rank} exceeds vLLM's largest ({_VLLM_LORA_RANKS[-1]})")


def merge_adapter_to_dir(model: str, adapter: str, dest: str, dtype: str = "auto") -> str:
    """Merge a PEFT adapter into its base model and save model + tokenizer under `dest`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = AutoModelForCausalLM.from_pretrained(
        model, dtype=torch_dtype(dtype, device), local_files_only=Path(model).is_dir()
    )
    lm = PeftModel.from_pretrained(lm, adapter, local_files_only=True).merge_and_unload()
    lm.save_pretrained(dest)
    load_tokenizer(tokenizer_source(model, adapter)).save_pretrained(dest)
    del lm
    return dest


class VLLMGenerator(Generator):
    """vLLM backend: one engine, the whole list in one chat call, per-prompt seeded
    SamplingParams(n=...), prefix caching, LoRA through LoRARequest, structured outputs."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        merge_adapter: bool = False,
        dtype: str = "auto",
        chat_template: str | None = None,
        **options: Any,
    ) -> None:
        import torch
        from vllm import LLM

        super().__init__(model, adapter)
        check_dtype(dtype)
        if dtype == "auto" and torch.cuda.is_available():
            dtype = "bfloat16"
        self._tmpdir: str | None = None
        self.lora_request: Any = None
        load_from = model
        engine: dict[str, Any] = {
            "model": model,
            "dtype": dtype,
            "enable_prefix_caching": True,
            "seed": 0,
            # compact JSON: with free whitespace a weak model fills its budget with blanks
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        }
        if adapter and merge_adapter:
            self._tmpdir = tempfile.mkdtemp(prefix="polyculture-merged-")
            load_from = merge_adapter_to_dir(model, adapter, self._tmpdir, dtype="auto")
            engine["model"] = load_from
        elif adapter:
            from vllm.lora.request import LoRARequest

            engine.update(
                enable_lora=True, max_loras=1, max_lora_rank=vllm_lora_rank(adapter_rank(adapter))
            )
            self.lora_request = LoRARequest("adapter", 1, str(Path(adapter).resolve()))
        for key, value in options.items():
            engine[key.removeprefix("vllm_")] = value
        log.info("vLLM engine options: %s", engine)
        self.llm = LLM(**engine)
        from polyculture.backends.chat import analyze_template

        self.chat_format = analyze_template(self.llm.get_tokenizer(), chat_template)

    def _params(
        self,
        n: int,
        sampling: Sampling,
        index: int,
        schema: dict[str, Any] | None,
        raw: bool = False,
    ) -> Any:
        from vllm import SamplingParams

        extra: dict[str, Any] = {}
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(json=schema)
        return SamplingParams(
            n=1 if sampling.greedy else n,
            temperature=sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            min_tokens=sampling.min_new_tokens if schema is None else 0,
            seed=derive_seed(sampling.seed, index, bits=31),
            stop=[*([] if raw else self.chat_format.stop_strings), *sampling.stop]
            if schema is None
            else None,
            stop_token_ids=None if raw else list(self.chat_format.end_of_turn_ids) or None,
            skip_special_tokens=True,
            **extra,
        )

    def _generate(
        self,
        convs: list[list[dict[str, str]]],
        n: int,
        sampling: Sampling,
        schema: dict[str, Any] | None,
    ) -> list[list[str]]:
        from polyculture.backends.chat import prepare_conversation

        params = [self._params(n, sampling, i, schema) for i in range(len(convs))]
        outputs = self.llm.chat(
            [prepare_conversation(c, self.chat_format) for c in convs],
            chat_template=self.chat_format.template if self.chat_format.plain else None,
            chat_template_kwargs={"enable_thinking": False},
            sampling_params=params,
            use_tqdm=True,
            lora_request=self.lora_request,
            add_generation_prompt=True,
        )
        return self._texts(outputs, n, sampling)

    def _generate_raw(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[str]]:
        params = [self._params(n, sampling, i, None, raw=True) for i in range(len(prompts))]
        outputs = self.llm.generate(
            prompts, sampling_params=params, use_tqdm=True, lora_request=self.lora_request
        )
        return self._texts(outputs, n, sampling)

    @staticmethod
    def _texts(outputs: Any, n: int, sampling: Sampling) -> list[list[str]]:
        results = []
        for out in outputs:
            texts = [o.text.strip() for o in sorted(out.outputs, key=lambda o: o.index)]
            results.append(texts * n if sampling.greedy else texts)
        return results

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def load_generator(
    model: str,
    *,
    backend: str = "auto",
    adapter: str | None = None,
    merge_adapter: bool = False,
    batch_size: int = 16,
    dtype: str = "auto",
    openai: Mapping[str, Any] | None = None,
    chat_template: str | None = None,
    **vllm_options: Any,
) -> Generator:
    """Load a chat model (a loadable path or hub id: resolve `builtin:` specs first) on the hf or
    vllm backend, optionally with a PEFT adapter (merged into the weights if merge_adapter).

    vllm_options go to vllm.LLM (a `vllm_` prefix is dropped, so the config's
    vllm_gpu_memory_utilization / vllm_max_model_len can be passed as they are); the hf
    backend ignores them.

    An API model spec (`openai:<model>`, `openai@<endpoint>:<model>`) is served by the openai
    backend (polyculture.backends.generation.openai) with the config's backend.openai settings, whatever `backend` says."""
    from polyculture.backends.generation.openai import is_api_spec

    if is_api_spec(model):
        from polyculture.backends.generation.openai import OpenAIGenerator

        if adapter:
            raise ConfigError(
                "adapter", f"'{model}' is an API model: it cannot load a LoRA adapter"
            )
        return OpenAIGenerator(model, openai)
    if model.startswith("builtin:"):
        raise ConfigError(
            "model", f"'{model}' is a model spec; resolve it to a path first (model_path)"
        )
    chosen = resolve_backend(backend)
    log.info("loading %s on the %s backend (adapter: %s)", model, chosen, adapter)
    if chosen == "vllm":
        if not vllm_available():
            raise ConfigError(
                "backend.generation", "backend 'vllm' requested but vllm is not installed"
            )
        return VLLMGenerator(
            model,
            adapter=adapter,
            merge_adapter=merge_adapter,
            dtype=dtype,
            chat_template=chat_template,
            **vllm_options,
        )
    if vllm_options:
        log.info("hf backend: ignoring vLLM options %s", sorted(vllm_options))
    return HFGenerator(
        model,
        adapter=adapter,
        merge_adapter=merge_adapter,
        batch_size=batch_size,
        dtype=dtype,
        chat_template=chat_template,
    )
