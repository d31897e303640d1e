"""polyculture.backends.generation on the hf backend with a real (tiny, random) Llama built here,
so these tests do not wait for the workflow's built-in model; PEFT adapter and xgrammar run for
real."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyculture.backends.generation import (
    Sampling,
    derive_seed,
    generator_kwargs,
    load_generator,
    resolve_backend,
    sampling_from_config,
)
from polyculture.backends.generation.base import adapter_rank, check_schema, parse_json_output
from polyculture.backends.generation.hf import HFGenerator, top_p_keep
from polyculture.backends.generation.vllm import vllm_lora_rank
from polyculture.errors import ConfigError, InputError

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "Name three fruits: 1. apple 2. banana 3. cherry",
    '{"answer": "yes", "reason": "because"} {"stance": "pro"} [1, 2, 3] true false null',
    "Translate into German: good morning → Guten Morgen. Καλημέρα. صباح الخير. 좋은 아침. 早上好.",
    "The survey asked ten citizens about family, work, religion and politics.",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_tokenizer(dest: Path, chat_template: str = CHAT_TEMPLATE):
    """A byte-level BPE tokenizer trained on CORPUS, with a chat template, saved under dest."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        chat_template=chat_template,
    )
    fast.save_pretrained(dest)
    return fast


def build_tiny_llama(dest: Path, seed: int = 0, eos_first: bool = False) -> Path:
    """A random 2-layer Llama (hidden 64) + tokenizer saved under dest (a few seconds on CPU).

    eos_first: tie the embeddings (a random 2-layer model with tied embeddings greedily repeats
    its last input token) and end the generation prompt with the EOS token, so that greedy
    decoding stops at once unless min_new_tokens forbids EOS."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    template = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|><|end|>{% endif %}")
    tok = build_tiny_tokenizer(dest, template if eos_first else CHAT_TEMPLATE)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=eos_first,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(dest)
    return dest


def build_tiny_lora(base: Path, dest: Path, seed: int = 1, r: int = 4) -> Path:
    """A random (non-zero B) LoRA adapter on all linear layers of the tiny model, saved as PEFT."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(dest)
    return dest


CONVS = [
    [{"role": "user", "content": "Name three fruits."}],
    [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "What is the capital of France? Answer with one word please."},
    ],
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "The survey asked ten citizens about family and work."}],
    [{"role": "user", "content": "Καλημέρα"}],
]
SCHEMA = {
    "type": "object",
    "properties": {
        "stance": {"enum": ["pro", "con", "null"]},
        "reason": {"type": "string", "maxLength": 12},
    },
    "required": ["stance", "reason"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def gen(tiny_llama: Path) -> HFGenerator:
    g = load_generator(str(tiny_llama), backend="hf", batch_size=2)
    assert isinstance(g, HFGenerator)
    return g


SAMPLING = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=7)


def test_n_samples_per_prompt_in_input_order(gen: HFGenerator) -> None:
    out = gen.generate(CONVS, n=3, sampling=SAMPLING)
    assert len(out) == len(CONVS)
    assert all(len(row) == 3 and all(isinstance(t, str) for t in row) for row in out)
    # a random model's samples differ within a prompt
    assert any(len(set(row)) > 1 for row in out)
    # input order: each prompt alone gives the same samples as inside the batch
    for i in (0, 1, 3):
        alone = gen.generate(CONVS[i : i + 1], n=3, sampling=SAMPLING)
        # a prompt's seed comes from its index in the call, so compare at index 0
        first = gen.generate(CONVS[i : i + 1] + CONVS[:i], n=3, sampling=SAMPLING)
        assert alone[0] == first[0]


def test_order_preserved_with_prompts_of_different_lengths(gen: HFGenerator) -> None:
    greedy = Sampling(temperature=0, max_new_tokens=8)
    batched = gen.generate(CONVS, n=1, sampling=greedy)
    singles = [gen.generate([c], n=1, sampling=greedy)[0] for c in CONVS]
    assert batched == singles
    lengths = [len(ids) for ids in gen.prompt_ids(CONVS)]
    assert len(set(lengths)) == len(lengths)  # the batch really mixed lengths


def test_same_seed_same_outputs_other_seed_differs(gen: HFGenerator) -> None:
    a = gen.generate(CONVS, n=2, sampling=SAMPLING)
    b = gen.generate(CONVS, n=2, sampling=SAMPLING)
    c = gen.generate(CONVS, n=2, sampling=Sampling(temperature=1.0, max_new_tokens=12, seed=8))
    assert a == b
    assert a != c


def test_seeded_outputs_independent_of_batch_size(tiny_llama: Path, gen: HFGenerator) -> None:
    other = load_generator(str(tiny_llama), backend="hf", batch_size=5)
    assert gen.batch_size != other.batch_size
    assert gen.generate(CONVS, n=2, sampling=SAMPLING) == other.generate(
        CONVS, n=2, sampling=SAMPLING
    )


def nucleus_by_sorting(row: list[float], top_p: float) -> set[int]:
    """The nucleus by the definition: sort descending, keep while the mass before is below
    top_p, then every token tied with the last kept one."""
    order = sorted(range(len(row)), key=lambda i: -row[i])
    kept, before = [], 0.0
    for i in order:
        if before >= top_p:
            break
        kept.append(i)
        before += row[i]
    return {i for i, p in enumerate(row) if p >= row[kept[-1]]}


@pytest.mark.parametrize("candidates", [1, 3, 8, 64])
def test_top_p_keep_matches_the_definition_inside_and_beyond_the_candidates(candidates) -> None:
    import torch

    g = torch.Generator().manual_seed(3)
    # peaked rows (nucleus among the candidates) and flat rows (nucleus beyond them)
    logits = torch.cat([torch.randn(6, 40, generator=g) * 4, torch.randn(6, 40, generator=g) * 0.2])
    probs = logits.softmax(-1).double()
    for top_p in (0.05, 0.5, 0.9, 0.999):
        keep = top_p_keep(probs, top_p, candidates=candidates)
        for r in range(probs.shape[0]):
            got = set(torch.nonzero(keep[r]).flatten().tolist())
            assert got == nucleus_by_sorting(probs[r].tolist(), top_p), (candidates, top_p, r)


def test_top_p_keep_keeps_ties_and_at_least_one_token() -> None:
    import torch

    probs = torch.tensor([[0.3, 0.3, 0.3, 0.1], [0.97, 0.01, 0.01, 0.01], [0.25] * 4])
    keep = top_p_keep(probs, 0.4, candidates=2)
    # row 0: 0.3 is kept, and the two tokens tied with it; row 1: only the first
    assert keep.tolist() == [[True, True, True, False], [True, False, False, False], [True] * 4]
    assert top_p_keep(probs, 1e-9).sum(-1).tolist() == [3, 1, 4]


def test_seeded_sampler_draws_from_the_tempered_nucleus() -> None:
    """Over many row seeds, the sampled tokens follow softmax(logits / T) restricted to the
    nucleus and renormalised (chi-square goodness of fit), and never leave the nucleus."""
    import torch
    from scipy.stats import chisquare

    from polyculture.backends.generation.hf import _SeededSampler

    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    temperature, top_p, rows = 0.8, 0.9, 4000
    sampler = _SeededSampler(
        [derive_seed(5, i) for i in range(rows)], temperature, top_p, device="cpu"
    )
    out = sampler(None, logits.expand(rows, -1).clone())
    assert torch.isfinite(out).sum(-1).eq(1).all()
    counts = torch.bincount(out.argmax(-1), minlength=len(logits)).double()
    probs = (logits / temperature).softmax(-1)
    keep = top_p_keep(probs[None], top_p)[0]
    assert counts[~keep].sum() == 0 and keep.sum() < len(logits)
    kept = probs[keep].double()
    expected = kept / kept.sum() * rows
    assert chisquare(counts[keep].numpy(), expected.numpy()).pvalue > 1e-3


def test_greedy_repeats_one_continuation(gen: HFGenerator) -> None:
    out = gen.generate(CONVS[:2], n=3, sampling=Sampling(temperature=0, max_new_tokens=8))
    assert all(len(row) == 3 and len(set(row)) == 1 for row in out)


def test_min_new_tokens_honoured(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "eos-first", eos_first=True)
    g = load_generator(str(model), backend="hf", batch_size=2)
    free = g.generate(CONVS[:3], n=2, sampling=Sampling(temperature=0, max_new_tokens=8))
    assert free == [["", ""]] * 3  # EOS at once
    forced = g.generate(
        CONVS[:3], n=2, sampling=Sampling(temperature=0, max_new_tokens=8, min_new_tokens=4)
    )
    assert all(text for row in forced for text in row)
    sampled = g.generate(
        CONVS[:3], n=2, sampling=Sampling(temperature=0.5, max_new_tokens=8, min_new_tokens=4)
    )
    assert all(text for row in sampled for text in row)


def test_special_tokens_are_stripped(gen: HFGenerator) -> None:
    out = gen.generate(CONVS, n=2, sampling=Sampling(temperature=1.5, max_new_tokens=20, seed=1))
    for row in out:
        for text in row:
            assert not any(tok in text for tok in SPECIAL)


def test_generate_json_valid_against_schema(gen: HFGenerator) -> None:
    import jsonschema

    s = Sampling(temperature=1.0, max_new_tokens=48, seed=5)
    out = gen.generate_json(CONVS, SCHEMA, n=2, sampling=s)
    assert len(out) == len(CONVS) and all(len(row) == 2 for row in out)
    parsed = [obj for row in out for obj in row if obj is not None]
    assert len(parsed) >= 8  # a random model under the grammar still fills the object
    for obj in parsed:
        jsonschema.validate(obj, SCHEMA)
        assert obj["stance"] in ("pro", "con", "null")
        assert len(obj["reason"]) <= 12
    assert out == gen.generate_json(CONVS, SCHEMA, n=2, sampling=s)
    greedy = gen.generate_json(
        CONVS[:2], SCHEMA, n=2, sampling=Sampling(temperature=0, max_new_tokens=48)
    )
    assert all(row[0] == row[1] for row in greedy)
    assert sum(obj is not None for row in greedy for obj in row) >= 2


def test_generate_json_cut_off_gives_none(gen: HFGenerator) -> None:
    out = gen.generate_json(CONVS[:2], SCHEMA, n=2, sampling=Sampling(max_new_tokens=3, seed=1))
    assert out == [[None, None], [None, None]]


def test_parse_json_output() -> None:
    v = check_schema(SCHEMA)
    assert parse_json_output('{"stance": "pro", "reason": "a\nb"}', v) == {
        "stance": "pro",
        "reason": "a\nb",
    }
    assert parse_json_output('{"stance": "maybe", "reason": ""}', v) is None
    assert parse_json_output('{"stance": "pro", "reason": "x"', v) is None
    assert parse_json_output("[1]", v) is None
    with pytest.raises(InputError, match="schema"):
        check_schema({"type": "no-such-type"})


def test_peft_adapter_loads_and_changes_output(tiny_llama: Path, tmp_path: Path, gen) -> None:
    adapter = build_tiny_lora(tiny_llama, tmp_path / "adapter")
    assert adapter_rank(str(adapter)) == 4
    greedy = Sampling(temperature=0, max_new_tokens=10)
    base_out = gen.generate(CONVS, n=1, sampling=greedy)
    with_lora = load_generator(str(tiny_llama), backend="hf", adapter=str(adapter))
    merged = load_generator(str(tiny_llama), backend="hf", adapter=str(adapter), merge_adapter=True)
    from peft import PeftModel

    assert isinstance(with_lora.lm, PeftModel)
    assert not isinstance(merged.lm, PeftModel)
    lora_out = with_lora.generate(CONVS, n=1, sampling=greedy)
    assert lora_out != base_out
    assert merged.generate(CONVS, n=1, sampling=greedy) == lora_out


def direct_continuation_logprob(g: HFGenerator, conv, continuation: str) -> float:
    """Sum of the continuation tokens' log-probabilities from one unpadded forward pass over
    the whole sequence (every position's logits)."""
    import torch

    prompt = g.prompt_ids([conv])[0]
    cont = g.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + cont])
    with torch.inference_mode():
        logp = g.lm(input_ids=ids).logits.float().log_softmax(-1)[0]
    return sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(cont))


def test_score_continuations_match_a_direct_computation(tiny_llama: Path, tmp_path: Path) -> None:
    """Batched, left-padded scoring that keeps only the last positions' logits gives each
    continuation's log-probability as one full pass does, on the base model and through a peft
    adapter, for continuations of different token lengths."""
    from polyculture.backends.generation.hf import accepts_logits_to_keep

    adapter = build_tiny_lora(tiny_llama, tmp_path / "adapter")
    convs = [*CONVS, [{"role": "user", "content": "a much longer prompt " * 6}]]
    continuations = ["PRO", "CON", "neither of the two"]
    for g in (
        load_generator(str(tiny_llama), backend="hf", batch_size=2),
        load_generator(str(tiny_llama), backend="hf", batch_size=4, adapter=str(adapter)),
    ):
        assert accepts_logits_to_keep(g.lm)
        scores = g.score_continuations(convs, continuations)
        for conv, row in zip(convs, scores, strict=True):
            for cont, got in zip(continuations, row, strict=True):
                assert got == pytest.approx(direct_continuation_logprob(g, conv, cont), abs=1e-3)


def test_bad_inputs_fail_clearly(tiny_llama: Path, gen: HFGenerator) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'tgi'"):
        load_generator(str(tiny_llama), backend="tgi")
    with pytest.raises(ConfigError, match="resolve it to a path"):
        load_generator("builtin:tiny-chat", backend="hf")
    with pytest.raises(InputError, match="conversation 1, message 0"):
        gen.generate([CONVS[0], [{"role": "bot", "content": "x"}]], n=1, sampling=SAMPLING)
    with pytest.raises(InputError, match="conversation 0"):
        gen.generate([[]], n=1, sampling=SAMPLING)
    with pytest.raises(ConfigError, match="'n'"):
        gen.generate(CONVS, n=0, sampling=SAMPLING)
    with pytest.raises(InputError, match="not a PEFT adapter"):
        load_generator(str(tiny_llama), backend="hf", adapter=str(tiny_llama))
    assert gen.generate([], n=2, sampling=SAMPLING) == []


def test_sampling_from_config() -> None:
    s = sampling_from_config({"temperature": 0, "max_new_tokens": 5}, seed=11)
    assert s == Sampling(temperature=0, top_p=0.95, max_new_tokens=5, min_new_tokens=0, seed=11)
    assert s.greedy
    with pytest.raises(ConfigError, match=r"wvs\.sampling\.topk"):
        sampling_from_config({"topk": 3}, seed=0, key="wvs.sampling")
    with pytest.raises(ConfigError, match=r"wvs\.sampling\.top_p"):
        sampling_from_config({"top_p": 0}, seed=0, key="wvs.sampling")
    with pytest.raises(ConfigError, match="min_new_tokens"):
        Sampling(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ConfigError, match="temperature"):
        Sampling(temperature=-1)
    stopped = sampling_from_config({"stop": ["11.", "\n\n"]}, seed=0)
    assert stopped.stop == ("11.", "\n\n") and s.stop == ()
    for bad in ("11.", [""], [11]):
        with pytest.raises(ConfigError, match=r"wvs\.sampling\.stop"):
            sampling_from_config({"stop": bad}, seed=0, key="wvs.sampling")


def test_stop_strings_end_generation_and_are_dropped(gen: HFGenerator, monkeypatch) -> None:
    greedy = Sampling(temperature=0, max_new_tokens=24)
    outputs = []
    generate = gen.lm.generate

    def recording(*args, **kw):
        outputs.append(generate(*args, **kw))
        return outputs[-1]

    monkeypatch.setattr(gen.lm, "generate", recording)
    full = gen.generate(CONVS[:1], n=1, sampling=greedy)[0][0]
    assert outputs[0].shape[1] == len(gen.prompt_ids(CONVS[:1])[0]) + 24  # ran to the budget
    # the stop: the text of generated tokens 2..3 (a printable piece, so it is found as decoded)
    new = outputs[0][0, -24:].tolist()
    stop = gen.tokenizer.decode(new[2:4])
    assert stop.isprintable() and stop.strip() and stop in full
    cut = gen.generate(
        CONVS[:1], n=1, sampling=Sampling(temperature=0, max_new_tokens=24, stop=(stop,))
    )
    # the text before the first stop, without it (as vLLM and the OpenAI API return it)
    assert cut == [[full[: full.find(stop)].strip()]]
    assert outputs[1].shape[1] < outputs[0].shape[1]  # decoding ended at the stop


def test_backend_choice_and_helpers() -> None:
    import torch

    from polyculture.backends.generation import vllm_available

    expected = "vllm" if vllm_available() and torch.cuda.is_available() else "hf"
    assert resolve_backend("auto") == expected
    assert resolve_backend("hf") == "hf"
    assert generator_kwargs(
        {
            "generation": "hf",
            "batch_size": 4,
            "embed_batch_size": 8,
            "dtype": "auto",
            "vllm_max_model_len": 2048,
        }
    ) == {"backend": "hf", "batch_size": 4, "dtype": "auto", "engine": {"max_model_len": 2048}}
    assert [vllm_lora_rank(r) for r in (4, 8, 9, 16, 64)] == [8, 8, 16, 16, 64]
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    assert derive_seed(5, 0, bits=31) < 2**31
