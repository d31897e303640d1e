"""The transformers (`hf`) generation backend: chat template, length-sorted batches with left
padding, per-row seeded sampling (see polyculture.backends.generation.base for the semantics),
xgrammar for JSON schemas, label scoring by log-probability."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyculture.backends.chat import cut_at_stop_strings
from polyculture.backends.generation.base import (
    Conversation,
    Generator,
    LoadOptions,
    Sampling,
    adapter_chat_template,
    adapter_rank,
    check_conversations,
    check_shared_tokenizer,
    derive_seed,
    load_tokenizer,
    resize_for_adapter,
    tokenizer_source,
    torch_dtype,
)
from polyculture.backends.registry import GENERATORS
from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)


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
        adapters: Mapping[str, str] | None = None,
        batch_size: int = 16,
        dtype: str = "auto",
        device: str | None = None,
        chat_template: str | None = None,
        device_map: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        from polyculture.backends.chat import analyze_template

        super().__init__(model, adapter, adapters)
        if batch_size < 1:
            raise ConfigError("backend.batch_size", f"expected >= 1, got {batch_size}")
        if adapter:
            adapter_rank(adapter)  # fails early unless it is a PEFT adapter directory
        check_shared_tokenizer(self.adapters)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch_dtype(dtype, self.device)
        local = Path(model).is_dir()
        tok_source = tokenizer_source(model, adapter)
        self.tokenizer = load_tokenizer(tok_source)
        if (own_template := adapter_chat_template(adapter)) is not None:
            self.tokenizer.chat_template = own_template  # the adapter's chat_template.jinja
        self.chat_format = analyze_template(self.tokenizer, chat_template)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(
            model, dtype=self.dtype, device_map=device_map or self.device, local_files_only=local
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

            resize_for_adapter(lm, adapter)  # an adapter trained with added tokens
            lm = PeftModel.from_pretrained(lm, adapter, local_files_only=True)
            if merge_adapter:
                lm = lm.merge_and_unload()
        elif self.adapters:
            from peft import PeftModel

            (first, path), *rest = self.adapters.items()
            lm = PeftModel.from_pretrained(lm, path, adapter_name=first, local_files_only=True)
            for name, path in rest:
                lm.load_adapter(path, adapter_name=name, local_files_only=True)
        # a model spread over GPUs by device_map stays where accelerate put it; inputs go to the
        # first GPU (self.device 'cuda')
        self.lm = (lm if device_map else lm.to(self.device)).eval()
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}

    def _switch(self, name: str | None) -> None:
        if name is not None:
            self.lm.set_adapter(name)

    def _adapter_scope(self) -> Any:
        """Where several adapters are loaded and none is chosen, a scope in which the model
        runs without them (peft's disable_adapter); else a scope that changes nothing."""
        if self.adapters and self.active_adapter is None:
            return self.lm.disable_adapter()
        return contextlib.nullcontext()

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
            with torch.inference_mode(), self._adapter_scope():
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
            with torch.inference_mode(), self._adapter_scope():
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


def hf_device_map(gpus_booked: int, gpus_visible: int) -> str | None:
    """device_map of a model on the hf backend: 'auto' (accelerate spreads the layers over the
    GPUs) where the job booked more than one GPU for the model and sees more than one, else
    None (the whole model on one device)."""
    return "auto" if gpus_booked > 1 and gpus_visible > 1 else None


@GENERATORS.register("hf")
def load_hf(model: str, options: LoadOptions) -> HFGenerator:
    """An HFGenerator for `model`; of the engine options (vLLM's) only the GPU count applies
    (tensor × pipeline parallel size > 1: the model is spread over the GPUs, device_map auto);
    the rest are logged and ignored."""
    import torch

    from polyculture.backends.engine import engine_gpus

    if options.engine:
        log.info("hf backend: ignoring vLLM options %s", sorted(options.engine))
    device_map = hf_device_map(engine_gpus(options.engine), torch.cuda.device_count())
    if device_map:
        log.info("hf backend: device_map %s over %d GPUs", device_map, torch.cuda.device_count())
    return HFGenerator(
        model,
        device_map=device_map,
        adapter=options.adapter,
        merge_adapter=options.merge_adapter,
        adapters=options.adapters,
        batch_size=options.batch_size,
        dtype=options.dtype,
        chat_template=options.chat_template,
    )
