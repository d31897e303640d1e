"""Chat templates as real models have them (polyculture.backends.chat): fixtures written for these tests
after the documented behaviour of Llama-3.1's (default system block), Gemma-2's (rejects system
turns), OLMo-2's and Qwen3's (not prefix-preserving) templates, and the plain format of models
without one. Each is checked on the WVS judge's conversation, the critique request and the
six-turn training dialogue's assistant-only mask."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from polyculture import train as T
from polyculture.backends import chat
from polyculture.consensus.dialogues import six_turn_messages
from polyculture.wvs.stances import JUDGE_SYSTEM, judge_conversation
from polyculture.wvs.topics import Topic

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
SPECIALS = [
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
    "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>",
    "<|im_start|>", "<|im_end|>",
]  # fmt: skip
# name: (bos, eos, end-of-turn text, system support)
FIXTURES = {
    "llama31": ("<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", "native"),
    "gemma2": ("<bos>", "<eos>", "<end_of_turn>", "merge"),
    "olmo2": ("<|endoftext|>", "<|endoftext|>", "<|endoftext|>", "native"),
    "qwen3": (None, "<|im_end|>", "<|im_end|>", "native"),
}
TOPIC = Topic(
    key="Q1",
    category="test",
    label="Work is important",
    pro="Work is very important in life.",
    con="Work is not important in life.",
    scale=4,
    reversed=False,
    affirmative=frozenset({1, 2}),
    valid=frozenset({1, 2, 3, 4}),
    variants=("How important is work?",),
)
SIX = six_turn_messages(
    "What do people eat at New Year in Spain?",
    "Roasted chestnuts.",
    "Point out what is wrong or missing in your answer.",
    "It misses the twelve grapes eaten at the midnight chimes.",
    "Now give a corrected answer.",
    "Twelve grapes, one at each chime of midnight.",
)


@pytest.fixture(scope="module")
def base_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = [JUDGE_SYSTEM, TOPIC.pro, TOPIC.con, *(m["content"] for m in SIX)] * 4
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[]
    )
    tok.train_from_iterator(text, trainer)
    return tok


def make_tokenizer(base: Tokenizer, name: str | None) -> PreTrainedTokenizerFast:
    bos, eos = FIXTURES[name][:2] if name else ("<bos>", "<eos>")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(base.to_str()),
        bos_token=bos,
        eos_token=eos,
        additional_special_tokens=SPECIALS,
    )
    if name:
        tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    return tok


def masked_text(tok, ids: list[int], mask: list[int]) -> list[str]:
    runs, cur = [], []
    for t, m in zip(ids, mask, strict=True):
        if m:
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_template_analysis_finds_system_support_and_end_of_turn(base_tokenizer, name) -> None:
    tok = make_tokenizer(base_tokenizer, name)
    fmt = chat.analyze_template(tok)
    _, _, eot, system = FIXTURES[name]
    assert fmt.system == system
    assert fmt.end_of_turn_text == eot
    assert fmt.end_of_turn_ids == (tok.convert_tokens_to_ids(eot),)
    assert not fmt.plain and fmt.stop_strings == ()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_judge_conversation_renders_on_every_template(base_tokenizer, name) -> None:
    tok = make_tokenizer(base_tokenizer, name)
    fmt = chat.analyze_template(tok)
    conv = judge_conversation(TOPIC, "She says work matters most to her.")
    if name == "gemma2":  # the bug this fixes: the template itself refuses the system turn
        with pytest.raises(Exception, match="System role not supported"):
            tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    (prompt,) = chat.render_prompts(tok, [conv], fmt)
    assert JUDGE_SYSTEM in prompt and "She says work matters most to her." in prompt
    # the instructions come before the summary, and the prompt ends ready for the reply
    assert prompt.index(JUDGE_SYSTEM) < prompt.index("Interview summary")
    endings = {
        "llama31": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "gemma2": "<start_of_turn>model\n",
        "olmo2": "<|assistant|>\n",
        "qwen3": "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    }
    assert prompt.endswith(endings[name])
    if name == "gemma2":  # merged into the one user turn: system text, blank line, user text
        assert prompt.count("<start_of_turn>user\n") == 1
        assert f"<start_of_turn>user\n{JUDGE_SYSTEM}\n\nTopic:" in prompt


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_six_turn_training_mask_on_every_template(base_tokenizer, name) -> None:
    tok = make_tokenizer(base_tokenizer, name)
    eot = FIXTURES[name][2]
    drops = T.DropCounter("train_tokenize")
    settings = T.TrainSettings(max_length=4096, max_drop_rate=0.0)
    for conv in (SIX, [{"role": "system", "content": "Answer briefly."}, *SIX]):
        (ex,) = T.build_examples(tok, [conv], settings, drops)
        mask = [lab != T.IGNORE_INDEX for lab in ex["labels"]]
        runs = masked_text(tok, ex["input_ids"], mask)
        assert runs == [m["content"] + eot for m in SIX if m["role"] == "assistant"]


def test_critique_request_renders_without_a_system_turn(base_tokenizer) -> None:
    for name in FIXTURES:
        tok = make_tokenizer(base_tokenizer, name)
        fmt = chat.analyze_template(tok)
        (prompt,) = chat.render_prompts(tok, [SIX[:3]], fmt)
        assert all(m["content"] in prompt for m in SIX[:3])


def test_a_template_that_drops_system_turns_gets_them_merged(base_tokenizer) -> None:
    tok = make_tokenizer(base_tokenizer, "olmo2")
    tok.chat_template = tok.chat_template.replace(
        "{{ '<|system|>\\n' + message['content'] + '\\n' }}", ""
    )
    fmt = chat.analyze_template(tok)
    assert fmt.system == "merge"
    (prompt,) = chat.render_prompts(tok, [judge_conversation(TOPIC, "Yes.")], fmt)
    assert f"<|user|>\n{JUDGE_SYSTEM}\n\nTopic:" in prompt


def test_model_without_template_gets_the_plain_format(base_tokenizer) -> None:
    tok = make_tokenizer(base_tokenizer, None)
    assert chat.template_of(tok) is None
    fmt = chat.analyze_template(tok)
    assert fmt.plain and fmt.system == "native" and fmt.end_of_turn_ids == ()
    assert fmt.stop_strings == chat.PLAIN_STOP_STRINGS
    (prompt,) = chat.render_prompts(tok, [SIX[:3]], fmt)
    assert prompt == (
        f"### User:\n{SIX[0]['content']}\n\n### Assistant:\n{SIX[1]['content']}\n\n"
        f"### User:\n{SIX[2]['content']}\n\n### Assistant:\n"
    )
    text = "It misses the grapes.\n### User:\nand more"
    assert chat.cut_at_stop_strings(text, fmt.stop_strings) == "It misses the grapes."
    # the assistant-only mask of the plain format covers the answers' text
    drops = T.DropCounter("train_tokenize")
    (ex,) = T.build_examples(tok, [SIX], T.TrainSettings(max_length=4096), drops)
    runs = masked_text(tok, ex["input_ids"], [lab != T.IGNORE_INDEX for lab in ex["labels"]])
    assert runs == [m["content"] for m in SIX if m["role"] == "assistant"]
    # a template from config replaces the plain one, and a model's own template is kept
    own = make_tokenizer(base_tokenizer, None)
    custom = "{% for m in messages %}{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
    assert chat.analyze_template(own, custom).template == custom
    gemma = make_tokenizer(base_tokenizer, "gemma2")
    assert chat.analyze_template(gemma, custom).template != custom
