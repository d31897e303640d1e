"""Assistant-only loss: the assistant-token mask of a conversation (from the chat template's
generation markers or by the prefix diff), truncation and tokenization."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from polyculture.backends.chat import template_of
from polyculture.drops import DropCounter
from polyculture.errors import ConfigError
from polyculture.train.data import IGNORE_INDEX, TokenizedExample
from polyculture.train.settings import MaskMethod, TrainSettings

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(chat_template: str | None) -> bool:
    """Whether a chat template marks assistant output with {% generation %} blocks."""
    return bool(chat_template) and _GENERATION_TAG.search(chat_template) is not None


def resolve_mask_method(
    tokenizer: Any, method: MaskMethod = "auto"
) -> Literal["template", "prefix"]:
    """'template' when the chat template has generation markers (or when asked), else 'prefix'."""
    template = template_of(tokenizer)
    if not template:
        raise ConfigError(
            "train.base_model", "the tokenizer has no chat template; an instruct model is needed"
        )
    if method == "template":
        if not has_generation_markers(template):
            raise ConfigError(
                "train.mask_method",
                "'template' needs {% generation %} markers in the chat template; use 'auto' or "
                "'prefix'",
            )
        return "template"
    if method == "prefix":
        return "prefix"
    return "template" if has_generation_markers(template) else "prefix"


def assistant_mask_from_template(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids and 0/1 assistant mask from transformers' generation-marker mask."""
    out = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(out["input_ids"])
    mask = [int(x) for x in out["assistant_masks"]]
    return ids, mask


def assistant_char_spans(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn, found by
    rendering prefixes (whitespace that the template puts after a turn is left out); fails when
    the template is not prefix-preserving."""
    msgs = list(messages)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        if not (
            full.startswith(before) and full.startswith(through) and len(through) > len(before)
        ):
            # not prefix-preserving (e.g. Qwen3's empty <think> block on the last assistant
            # turn only): locate each turn by its own text and the end-of-turn tokens after it
            from polyculture.backends.chat import assistant_spans_by_content, end_of_turn

            return full, assistant_spans_by_content(full, msgs, end_of_turn(tokenizer)[1])
        end = len(through)
        while end > len(before) and through[end - 1].isspace():
            end -= 1  # separator after the end-of-turn token, outside the assistant's output
        spans.append((len(before), end))
    return full, spans


def assistant_mask_by_prefix(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids and 0/1 assistant mask from prefix renderings: a token is an assistant token
    when its characters overlap an assistant turn's span (as transformers' own mask does)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("train.base_model", "the prefix mask needs a fast tokenizer (offsets)")
    full, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [0] * len(ids)
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and any(s < hi and e > lo for lo, hi in spans):
            mask[t] = 1
    return ids, mask


def assistant_mask(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], method: Literal["template", "prefix"]
) -> tuple[list[int], list[int]]:
    """Token ids and assistant mask of one conversation by the resolved method."""
    if method == "template":
        return assistant_mask_from_template(tokenizer, messages)
    return assistant_mask_by_prefix(tokenizer, messages)


def truncate(
    ids: list[int], mask: list[int], max_length: int, side: Literal["right", "left"]
) -> tuple[list[int], list[int]]:
    """Cut to `max_length` tokens: 'right' keeps the start, 'left' keeps the end."""
    if len(ids) <= max_length:
        return ids, mask
    if side == "right":
        return ids[:max_length], mask[:max_length]
    return ids[-max_length:], mask[-max_length:]


def tokenize_conversation(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    max_length: int,
    truncation_side: Literal["right", "left"] = "right",
    method: Literal["template", "prefix"] = "template",
) -> TokenizedExample | None:
    """Ids and labels of one conversation, truncated; None when no assistant token is left."""
    ids, mask = assistant_mask(tokenizer, messages, method)
    ids, mask = truncate(ids, mask, max_length, truncation_side)
    if not any(mask):
        return None
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    return TokenizedExample(input_ids=ids, labels=labels)


def tokenize_examples(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    settings: TrainSettings,
    drops: DropCounter,
) -> list[dict[str, list[int]] | None]:
    """Features of every conversation, None where truncation left no assistant token (counted
    in `drops`). A tokenizer without a chat template gets the plain format (polyculture.backends.chat);
    system turns are merged into the first user turn where the template rejects them."""
    from polyculture.backends.chat import analyze_template, prepare_conversation

    fmt = analyze_template(tokenizer)
    method = resolve_mask_method(tokenizer, settings.mask_method)
    out: list[dict[str, list[int]] | None] = []
    for conv in conversations:
        drops.seen()
        ex = tokenize_conversation(
            tokenizer,
            prepare_conversation(conv, fmt),
            max_length=settings.max_length,
            truncation_side=settings.truncation_side,
            method=method,
        )
        if ex is None:
            drops.drop("no_assistant_tokens_after_truncation")
            out.append(None)
        else:
            out.append(ex.as_features())
    return out


def build_examples(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    settings: TrainSettings,
    drops: DropCounter,
) -> list[dict[str, list[int]]]:
    """Tokenize every conversation; count those without assistant tokens after truncation."""
    return [e for e in tokenize_examples(tokenizer, conversations, settings, drops) if e]
