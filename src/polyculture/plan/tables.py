"""The plan's default tables: engine throughput per model size and GPU kind, and API prices per
model; each row says where it comes from. A config's `plan.throughput` rows and `plan.prices`
entries replace or add to them (:func:`throughput_rows`, :func:`price_table`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyculture.errors import ConfigError

_H100_8B = (
    "vLLM offline throughput, Llama-3-8B on one H100, 256 in / 256 out: ~24 req/s, ~6.2k "
    "output tok/s; engine start of an 8B model ~60 s to the first response (vLLM start-up "
    "figures)"
)
_SCALED = (
    "our scaling of the 8B H100 row: decoding is memory-bandwidth bound, so tok/s ~ 1/params "
    "and start-up ~ weight loading (30 s + 4 s per billion parameters)"
)
_H200 = (
    "the H100 row x 1.43: HBM bandwidth 4.8 TB/s (H200) over 3.35 TB/s (H100 SXM), NVIDIA "
    "data sheets"
)
_PREFILL = "prefill 8x the decode rate: our choice (prompt tokens are computed in parallel)"


@dataclass(frozen=True)
class Throughput:
    """Tokens per second of one engine (a job's GPUs) for models up to `max_params_b` billion
    parameters on GPU kind `gpu`, and its start-up seconds."""

    gpu: str
    max_params_b: float
    output_tok_s: float
    input_tok_s: float
    startup_s: float
    source: str


def _row(gpu: str, params_b: float, factor: float, source: str) -> Throughput:
    """A row scaled from the 8B H100 figures (6,200 output tok/s, 60 s start-up)."""
    out = 6200.0 * 8.0 / params_b * factor
    return Throughput(gpu, params_b, out, 8 * out, 30.0 + 4.0 * params_b, source)


#: Default rows; the first row whose gpu matches and whose max_params_b covers the model wins.
DEFAULT_THROUGHPUT: tuple[Throughput, ...] = (
    *(
        _row("h100", b, 1.0, _H100_8B if b == 8 else f"{_SCALED}; {_PREFILL}")
        for b in (3.0, 8.0, 10.0, 30.0, 80.0)
    ),
    *(
        _row("h200", b, 1.43, f"{_H200}; {_SCALED}; {_PREFILL}")
        for b in (3.0, 8.0, 10.0, 30.0, 80.0)
    ),
    Throughput(
        "cpu",
        1.0,
        180.0,
        1440.0,
        5.5,
        "measured by benchmarks/bench_demo_plan.py (2026-12-07, 2 cores, benchmarks/results.json): "
        "CPU seconds of tiny-chat on the hf backend, a fresh process to the model loaded and "
        "batched sampling; prefill 8x decode (our choice)",
    ),
)

#: Date and source of the default prices (US dollars per million tokens, standard tier).
PRICES_DATE = "2025-06-01"
PRICES_SOURCE = "https://openai.com/api/pricing/ (and platform.openai.com/docs/models per model)"
DEFAULT_PRICES: Mapping[str, Mapping[str, float]] = {
    "gpt-4o": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
    "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    "gpt-4.1": {"input_per_mtok": 2.00, "output_per_mtok": 8.00},
    "gpt-4.1-mini": {"input_per_mtok": 0.40, "output_per_mtok": 1.60},
    "gpt-4.1-nano": {"input_per_mtok": 0.10, "output_per_mtok": 0.40},
    "gpt-4-turbo-2024-04-09": {"input_per_mtok": 10.00, "output_per_mtok": 30.00},
    "gpt-3.5-turbo-0125": {"input_per_mtok": 0.50, "output_per_mtok": 1.50},
}


def throughput_rows(plan_cfg: Mapping[str, Any]) -> list[Throughput]:
    """The config's `plan.throughput` rows (each with gpu, max_params_b, output_tok_s,
    input_tok_s, startup_s, source) before the defaults, so that they win."""
    rows = []
    for i, row in enumerate(plan_cfg.get("throughput") or []):
        try:
            rows.append(Throughput(**{k: row[k] for k in Throughput.__dataclass_fields__}))
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"plan.throughput[{i}]",
                f"a row needs gpu, max_params_b, output_tok_s, input_tok_s, startup_s and "
                f"source ({exc})",
            ) from None
    return [*rows, *DEFAULT_THROUGHPUT]


def lookup_throughput(rows: Sequence[Throughput], gpu: str, params_b: float) -> Throughput:
    """The first row of GPU kind `gpu` (case-insensitive) that covers `params_b`; the largest
    of that kind when none does. Fails naming plan.throughput when the kind has no row."""
    kind = [r for r in rows if r.gpu.lower() == gpu.lower()]
    if not kind:
        known = sorted({r.gpu for r in rows})
        raise ConfigError(
            "plan.throughput",
            f"no row for GPU kind '{gpu}' (the profile's gpu_model); rows exist for "
            f"{', '.join(known)}: add one",
        )
    fits = [r for r in kind if r.max_params_b >= params_b]
    return fits[0] if fits else max(kind, key=lambda r: r.max_params_b)


def params_billions(name: str) -> float:
    """A model's size in billions of parameters read from its name ('gemma-2-27b-it' -> 27,
    'Qwen3-Embedding-0.6B' -> 0.6); 1 where the name says none (the demo's tiny models)."""
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", name)
    return float(m.group(1)) if m else 1.0


def price_table(plan_cfg: Mapping[str, Any]) -> dict[str, Mapping[str, float]]:
    """The default prices with the config's `plan.prices` entries over them."""
    return {**DEFAULT_PRICES, **(plan_cfg.get("prices") or {})}


def cost_usd(
    prices: Mapping[str, Mapping[str, float]], model: str, input_tokens: int, output_tokens: int
) -> float:
    """Dollars for the tokens; fails naming plan.prices.<model> when the table lacks it."""
    if model not in prices:
        raise ConfigError(
            f"plan.prices.{model}",
            f"no price for API model '{model}' (the default table, dated {PRICES_DATE}, has "
            f"{', '.join(sorted(DEFAULT_PRICES))}); add input_per_mtok and output_per_mtok",
        )
    p = prices[model]
    return (input_tokens * p["input_per_mtok"] + output_tokens * p["output_per_mtok"]) / 1e6
