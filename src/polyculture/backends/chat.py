"""Conversations rendered the way each model's own chat template wants them.

Every model-facing stage builds chat conversations ({role, content} lists, optionally with a
system turn). Real templates differ in ways that break a pipeline that assumes one of them:

- **System turns.** Llama-3.1's template puts a default system block in front of every prompt
  and merges a given system turn into it; Gemma-2's raises "System role not supported"; others
  silently drop a system turn. :func:`analyze_template` finds out *by rendering* a conversation
  with a sentinel system text (never by a list of model names): where rendering fails or the
  sentinel is missing from the output, :func:`prepare_conversation` merges the system text into
  the first user turn (system text, a blank line, the user text), the convention of Gemma's own
  documentation.
- **No template.** A base model (e.g. Gemma-3 270M) has no chat template. It gets
  :data:`PLAIN_CHAT_TEMPLATE` (or the config's ``backend.chat_template``): turns as
  ``### User:`` / ``### Assistant:`` blocks separated by blank lines; generation stops at the
  next ``### `` header (:data:`PLAIN_STOP_STRINGS`), since a base model rarely emits its EOS.
- **End of turn.** The tokens that close an assistant turn are found by rendering a
  user/assistant exchange and reading the special tokens that follow the assistant text
  (``<|im_end|>`` on SmolLM2 / Qwen, ``<|eot_id|>`` on Llama-3.1, ``<end_of_turn>`` on Gemma);
  the backends stop at them as well as at the model's EOS.
- **Assistant-only loss mask.** :func:`assistant_spans_by_content` locates assistant turns in a
  rendering whose template is not prefix-preserving (Qwen3's adds an empty ``<think>`` block
  to the last assistant turn only), by the turn's own text plus the end-of-turn text after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyculture.errors import ConfigError

#: The documented prompt format of models without a chat template (a base model).
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Assistant:\n' + message['content'] + '\n\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)
#: Where generation under PLAIN_CHAT_TEMPLATE stops (the model starting another turn).
PLAIN_STOP_STRINGS = ("\n### ", "### User:")

_SENTINEL_SYSTEM = "Q7xSYSTEMSENTINELz"
_SENTINEL_USER = "Q7xUSERSENTINELz"
_SENTINEL_ASSISTANT = "Q7xASSISTANTSENTINELz"


@dataclass(frozen=True)
class ChatFormat:
    """What rendering found out about one tokenizer's chat template."""

    template: str
    system: str  # "native" | "merge"
    plain: bool  # the template is PLAIN_CHAT_TEMPLATE or one from config (no own template)
    end_of_turn_ids: tuple[int, ...]
    end_of_turn_text: str
    stop_strings: tuple[str, ...]


def template_of(tokenizer: Any) -> str | None:
    """The tokenizer's chat template (the 'default' one of a named set), or None."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    # enable_thinking=False: templates that know it (Qwen3) then ask for the answer without a
    # reasoning block; every stage here wants answers. Other templates ignore the variable.
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt, enable_thinking=False
    )


def merge_system(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The conversation with its system turn(s) merged into the first user turn (system text,
    a blank line, user text); a system turn without a user turn after it becomes a user turn."""
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    head = "\n\n".join(system)
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{head}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": head}, *rest]


def system_support(tokenizer: Any) -> str:
    """'native' when the template renders a system turn's text, else 'merge' (it raises, or
    drops the text)."""
    probe = [
        {"role": "system", "content": _SENTINEL_SYSTEM},
        {"role": "user", "content": _SENTINEL_USER},
    ]
    try:
        text = _render(tokenizer, probe, True)
    except Exception:  # jinja2 TemplateError, raise_exception(...) of the template
        return "merge"
    return "native" if _SENTINEL_SYSTEM in text and _SENTINEL_USER in text else "merge"


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(tid))
    return ids


def end_of_turn(tokenizer: Any) -> tuple[tuple[int, ...], str]:
    """The special tokens that the template writes right after an assistant turn's text (ids and
    text), found by rendering a user/assistant exchange; empty when there are none."""
    msgs = [
        {"role": "user", "content": _SENTINEL_USER},
        {"role": "assistant", "content": _SENTINEL_ASSISTANT},
    ]
    try:
        text = _render(tokenizer, msgs, False)
    except Exception as exc:
        raise ConfigError(
            "chat template", f"the template cannot render a user/assistant exchange: {exc}"
        ) from None
    at = text.rfind(_SENTINEL_ASSISTANT)
    if at < 0:
        return (), ""
    tail = text[at + len(_SENTINEL_ASSISTANT) :].lstrip(" ")
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    special = _special_ids(tokenizer)
    found: list[int] = []
    for t in ids:
        if t in special:
            found.append(int(t))
        else:
            break
    return tuple(found), tokenizer.decode(found) if found else ""


def analyze_template(tokenizer: Any, override: str | None = None) -> ChatFormat:
    """Give a tokenizer without a chat template one (`override`, else PLAIN_CHAT_TEMPLATE; a
    model's own template is always kept) and find out how it treats system turns and how it ends a turn."""
    plain = template_of(tokenizer) is None
    if plain:
        tokenizer.chat_template = override or PLAIN_CHAT_TEMPLATE
    template = template_of(tokenizer) or ""
    eot_ids, eot_text = end_of_turn(tokenizer)
    stops: tuple[str, ...] = PLAIN_STOP_STRINGS if plain and not override and not eot_ids else ()
    return ChatFormat(
        template=template,
        system=system_support(tokenizer),
        plain=plain,
        end_of_turn_ids=eot_ids,
        end_of_turn_text=eot_text,
        stop_strings=stops,
    )


def prepare_conversation(
    messages: Sequence[Mapping[str, str]], fmt: ChatFormat
) -> list[dict[str, str]]:
    """The conversation as this template can render it (system merged where it must be)."""
    if fmt.system == "merge" and any(m["role"] == "system" for m in messages):
        return merge_system(messages)
    return [dict(m) for m in messages]


def render_prompts(
    tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, str]]], fmt: ChatFormat
) -> list[str]:
    """Each conversation rendered with the generation prompt, ready for the assistant's turn."""
    return [_render(tokenizer, prepare_conversation(c, fmt), True) for c in conversations]


def cut_at_stop_strings(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string (the whole text when none occurs)."""
    cut = len(text)
    for s in stops:
        at = text.find(s)
        if at >= 0:
            cut = min(cut, at)
    return text[:cut]


def assistant_spans_by_content(
    full: str, messages: Sequence[Mapping[str, str]], end_of_turn_text: str
) -> list[tuple[int, int]]:
    """Character spans of the assistant turns in a rendering `full`, found in order by each
    turn's text (searched after the previous turn), extended over the end-of-turn text where
    it follows directly. Fails naming the turn when a text is not found."""
    spans = []
    cursor = 0
    for i, m in enumerate(messages):
        content = m["content"]
        if m["role"] != "assistant":
            if content:
                at = full.find(content, cursor)
                if at >= 0:
                    cursor = at + len(content)
            continue
        at = full.find(content, cursor) if content else -1
        if at < 0:
            raise ConfigError(
                "train.base_model",
                f"the chat template does not render assistant turn {i + 1}'s text verbatim, so "
                "its tokens cannot be located",
            )
        end = at + len(content)
        if end_of_turn_text and full.startswith(end_of_turn_text, end):
            end += len(end_of_turn_text)
        spans.append((at, end))
        cursor = end
    return spans
