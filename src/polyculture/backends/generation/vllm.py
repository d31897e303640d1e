"""The vLLM (`vllm`) generation backend: one engine, the whole list in one chat call,
per-prompt seeded SamplingParams(n=...), prefix caching, LoRA through LoRARequest, structured
outputs (see polyculture.backends.generation.base for the sampling semantics)."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyculture.backends.generation.base import (
    Generator,
    LoadOptions,
    Sampling,
    adapter_chat_template,
    adapter_embedding_rows,
    adapter_rank,
    check_dtype,
    derive_seed,
    merge_adapter_to_dir,
    tokenizer_source,
)
from polyculture.backends.registry import GENERATORS
from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank `rank`."""
    for allowed in _VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise InputError("adapter", f"LoRA rank {rank} exceeds vLLM's largest ({_VLLM_LORA_RANKS[-1]})")


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
        adapters: Mapping[str, str] | None = None,
        dtype: str = "auto",
        chat_template: str | None = None,
        **options: Any,
    ) -> None:
        import torch
        from vllm import LLM

        super().__init__(model, adapter, adapters)
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
        if adapter and not merge_adapter and adapter_embedding_rows(adapter) is not None:
            # vLLM's LoRA requests carry no full embedding layers (an adapter trained with added
            # tokens): such an adapter is merged into a copy of the model, resized
            log.warning("adapter %s saved resized embeddings: merging it for vLLM", adapter)
            merge_adapter = True
        if adapter and not merge_adapter and tokenizer_source(model, adapter) == adapter:
            # its own tokenizer and template (a merged copy holds them already)
            engine["tokenizer"] = str(Path(adapter).resolve())
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
        self._loras: dict[str, Any] = {}
        if self.adapters:
            from vllm.lora.request import LoRARequest

            # every adapter resident at once (max_loras = their number): switching costs nothing
            rank = max(adapter_rank(p) for p in self.adapters.values())
            engine.update(
                enable_lora=True, max_loras=len(self.adapters), max_lora_rank=vllm_lora_rank(rank)
            )
            self._loras = {
                name: LoRARequest(name, i, str(Path(p).resolve()))
                for i, (name, p) in enumerate(self.adapters.items(), start=1)
            }
        for key, value in options.items():
            engine[key.removeprefix("vllm_")] = value
        log.info("vLLM engine options: %s", engine)
        self.llm = LLM(**engine)
        from polyculture.backends.chat import analyze_template

        tokenizer = self.llm.get_tokenizer()
        if (own_template := adapter_chat_template(adapter)) is not None:
            tokenizer.chat_template = own_template  # the adapter's chat_template.jinja
        self.chat_format = analyze_template(tokenizer, chat_template)

    def _switch(self, name: str | None) -> None:
        self.lora_request = self._loras[name] if name is not None else None

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


@GENERATORS.register("vllm")
def load_vllm(model: str, options: LoadOptions) -> VLLMGenerator:
    """A VLLMGenerator for `model`, with the engine options passed to vllm.LLM."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "backend.generation", "backend 'vllm' requested but vllm is not installed"
        )
    return VLLMGenerator(
        model,
        adapter=options.adapter,
        merge_adapter=options.merge_adapter,
        adapters=options.adapters,
        dtype=options.dtype,
        chat_template=options.chat_template,
        **options.engine,
    )
