"""Builders of the built-in tiny models (`builtin:tiny-chat`, `builtin:tiny-embed`): a byte-level
BPE tokenizer with a chat template, a small Llama-style causal LM trained on the tiny chat corpus
(loss on assistant tokens only), and a small sentence-transformers encoder trained briefly so
that translations lie close together. CPU only, fixed seeds and thread count, deterministic
algorithms: the same corpus, settings and seed give the same bytes."""

from __future__ import annotations

import bisect
import logging
import math
import os
import random
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from polyculture.backends.builtin.tiny_corpus import (
    Conversation,
    CorpusTables,
    build_chat_corpus,
    conversation_counts,
    corpus_sha256,
    load_corpus_tables,
    tokenizer_texts,
    translation_pairs,
)
from polyculture.io import atomic_dir, write_json

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

# Turns: "<|role|>\n{content}</s>\n". Assistant content and its end-of-turn token are marked with
# {% generation %} so that apply_chat_template(..., return_assistant_tokens_mask=True) masks them.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('tiny-chat: unknown role ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>\\n' -}}"
    "{%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class TinyChatSettings:
    """Size and training schedule of builtin:tiny-chat."""

    vocab_size: int = 4096
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 1024
    steps: int = 400
    learning_rate: float = 6e-3
    warmup_steps: int = 20
    batch_size: int = 4
    seq_len: int = 384
    weight_decay: float = 0.01
    threads: int = 2


@dataclass(frozen=True)
class TinyEmbedSettings:
    """Size and contrastive training schedule of builtin:tiny-embed."""

    vocab_size: int = 4096
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_seq_length: int = 128
    steps: int = 60
    learning_rate: float = 1e-3
    batch_size: int = 24
    temperature: float = 0.05
    threads: int = 2


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int = 1024) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, with <s>, </s>, <pad>, role
    tokens and the chat template; pads on the left (for generation). Round-trips any UTF-8."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode_conversations(
    tokenizer: Any, convs: Sequence[Conversation], batch: int = 256
) -> list[tuple[list[int], list[int]]]:
    """(token ids, assistant mask) of each conversation, through the chat template."""
    out: list[tuple[list[int], list[int]]] = []
    for i in range(0, len(convs), batch):
        enc = tokenizer.apply_chat_template(
            list(convs[i : i + batch]),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        out.extend(zip(enc["input_ids"], enc["assistant_masks"], strict=True))
    return out


def pack_sequences(
    seqs: Sequence[tuple[list[int], list[int]]], seq_len: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Whole conversations packed into blocks of `seq_len` tokens by best-fit decreasing (longest
    first, each into the fullest block it fits; ties by input order), right-padded; a
    conversation longer than a block is cut at `seq_len`. Returns input_ids, attention_mask,
    labels (-100 outside assistant tokens and on padding) and the number of cut conversations."""
    cut = sum(len(ids) > seq_len for ids, _ in seqs)
    items = [(ids[:seq_len], mask[:seq_len]) for ids, mask in seqs]
    order = sorted(range(len(items)), key=lambda i: (-len(items[i][0]), i))
    free: list[tuple[int, int]] = []  # (free tokens, block index), sorted
    blocks: list[list[int]] = []
    for i in order:
        need = len(items[i][0])
        j = bisect.bisect_left(free, (need, -1))
        if j < len(free):
            room, b = free.pop(j)
        else:
            room, b = seq_len, len(blocks)
            blocks.append([])
        blocks[b].append(i)
        if room - need > 0:
            bisect.insort(free, (room - need, b))
    n = len(blocks)
    input_ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    attention = torch.zeros((n, seq_len), dtype=torch.long)
    labels = torch.full((n, seq_len), -100, dtype=torch.long)
    for b, members in enumerate(blocks):
        ids = [t for i in members for t in items[i][0]]
        mask = [m for i in members for m in items[i][1]]
        t = torch.tensor(ids, dtype=torch.long)
        m = torch.tensor(mask, dtype=torch.bool)
        input_ids[b, : len(ids)] = t
        attention[b, : len(ids)] = 1
        labels[b, : len(ids)] = torch.where(m, t, torch.full_like(t, -100))
    return input_ids, attention, labels, cut


def masked_lm_loss(
    model: Any, input_ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Next-token cross-entropy over labelled positions only; the output layer runs only where a
    label exists (the same loss as `model(..., labels=labels).loss`, with less compute)."""
    hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


# ---------------------------------------------------------------------------------------------
# deterministic training helpers


@contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Fixed seeds, thread count and deterministic algorithms for the duration of a build."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def lr_at(step: int, steps: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Use learning rate `lr` in every parameter group of `opt` from now on."""
    for group in opt.param_groups:
        group["lr"] = lr


def _optimizer_step(
    loss: torch.Tensor, opt: torch.optim.Optimizer, params: Iterable[torch.Tensor]
) -> float:
    """Back-propagate `loss`, clip the gradient norm of `params` at 1 and take one step of `opt`;
    returns the loss as a float."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def _training_info(
    losses: Sequence[float],
    settings: TinyChatSettings | TinyEmbedSettings,
    seed: int,
    corpus_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """The build-info entries that every tiny model records about its training: steps, the mean
    loss of the last ten steps, the first loss, seed, settings and the corpus checksum."""
    tail = losses[-10:]
    return {
        "steps": settings.steps,
        "final_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "first_loss": round(losses[0], 4) if losses else None,
        "seed": seed,
        "settings": asdict(settings),
        "corpus_sha256": corpus_sha256(corpus_dir),
    }


# ---------------------------------------------------------------------------------------------
# builtin:tiny-chat


def make_tiny_chat_model(settings: TinyChatSettings, tokenizer: Any) -> Any:
    """A randomly initialised LlamaForCausalLM of the configured size (tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_kv_heads,
        max_position_embeddings=settings.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
    )
    return LlamaForCausalLM(config)


def train_causal_lm(
    model: Any,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    labels: torch.Tensor,
    settings: TinyChatSettings,
    seed: int,
) -> list[float]:
    """AdamW on shuffled blocks (a seeded permutation per epoch), loss on labelled tokens only;
    returns the loss of each step."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(input_ids), generator=gen)
    pos = 0
    losses: list[float] = []
    model.train()
    for step in range(settings.steps):
        if pos + settings.batch_size > len(order):
            order, pos = torch.randperm(len(input_ids), generator=gen), 0
        idx = order[pos : pos + settings.batch_size]
        pos += settings.batch_size
        _set_lr(opt, lr_at(step, settings.steps, settings.warmup_steps, settings.learning_rate))
        loss = masked_lm_loss(model, input_ids[idx], attention[idx], labels[idx])
        losses.append(_optimizer_step(loss, opt, params))
        if step % 20 == 0 or step == settings.steps - 1:
            log.info("tiny-chat step %d/%d loss %.4f", step + 1, settings.steps, losses[-1])
    model.eval()
    return losses


def build_tiny_chat(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: TinyChatSettings,
    seed: int,
) -> dict[str, Any]:
    """Train the tokenizer and the tiny Llama on the corpus in `corpus_dir`; write model
    (safetensors), tokenizer, generation_config and build_info.json to `out_dir`. Returns the
    build info (parameters, steps, final loss, corpus sha256; no timestamps)."""
    from transformers import GenerationConfig

    tables = load_corpus_tables(corpus_dir)
    with deterministic_torch(seed, settings.threads):
        tokenizer = train_tokenizer(
            tokenizer_texts(tables), settings.vocab_size, settings.max_position_embeddings
        )
        convs = build_chat_corpus(tables, seed)
        seqs = encode_conversations(tokenizer, convs)
        input_ids, attention, labels, cut = pack_sequences(
            seqs, settings.seq_len, tokenizer.pad_token_id
        )
        log.info(
            "tiny-chat corpus: %d conversations, %d tokens, %d blocks of %d, %d cut",
            len(convs),
            sum(len(s[0]) for s in seqs),
            len(input_ids),
            settings.seq_len,
            cut,
        )
        torch.manual_seed(seed)
        model = make_tiny_chat_model(settings, tokenizer)
        n_params = count_parameters(model)
        log.info("tiny-chat: %d parameters", n_params)
        losses = train_causal_lm(model, input_ids, attention, labels, settings, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.7,
        top_p=0.95,
        max_new_tokens=256,
    )
    info = {
        "model": "builtin:tiny-chat",
        "architecture": "LlamaForCausalLM",
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        **_training_info(losses, settings, seed, corpus_dir),
        "corpus": dict(conversation_counts(convs)),
        "tokens": sum(len(s[0]) for s in seqs),
        "assistant_tokens": sum(sum(s[1]) for s in seqs),
        "blocks": len(input_ids),
        "cut_conversations": cut,
        "torch": torch.__version__,
    }
    with atomic_dir(out_dir, fixed_modes=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(info, tmp / "build_info.json")
    return info


# ---------------------------------------------------------------------------------------------
# builtin:tiny-embed


def mean_pool(hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors over non-padding positions, L2-normalised (as Pooling(mean) +
    Normalize in sentence-transformers)."""
    m = attention.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _contrastive_batches(
    tables: CorpusTables, batch_size: int, steps: int, seed: int
) -> Iterator[tuple[list[str], list[str]]]:
    """Per step, `batch_size` pairs (a, b) of texts in two different languages that say the same
    thing; distinct groups within a batch, so other rows are negatives. Half a batch (at most)
    are parallel sentences (few groups, many scripts), the rest survey summaries."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for gid, code, text in translation_pairs(tables):
        groups.setdefault(gid, []).append((code, text))
    ids = sorted(g for g, v in groups.items() if len(v) >= 2)
    parallel = [g for g in ids if g.startswith("p:")]
    others = [g for g in ids if not g.startswith("p:")]
    n_par = min(len(parallel), batch_size // 2)
    rng = random.Random(f"{seed}:embed")
    for _ in range(steps):
        a, b = [], []
        n_other = min(batch_size - n_par, len(others))
        chosen = rng.sample(parallel, n_par) + rng.sample(others, n_other)
        for gid in chosen:
            (_, x), (_, y) = rng.sample(groups[gid], 2)
            a.append(x)
            b.append(y)
        yield a, b


def build_tiny_embed(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: TinyEmbedSettings,
    seed: int,
) -> dict[str, Any]:
    """Train the tokenizer (the same one as tiny-chat's) and a small BERT encoder with an in-batch
    contrastive loss on translation pairs; save it as a sentence-transformers model
    (Transformer + Pooling(mean) + Normalize) with build_info.json in `out_dir`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    tables = load_corpus_tables(corpus_dir)
    losses: list[float] = []
    with deterministic_torch(seed, settings.threads):
        tokenizer = train_tokenizer(
            tokenizer_texts(tables), settings.vocab_size, settings.max_seq_length
        )
        tokenizer.padding_side = "right"
        tokenizer.chat_template = None
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=settings.hidden_size,
            num_hidden_layers=settings.num_layers,
            num_attention_heads=settings.num_heads,
            intermediate_size=settings.intermediate_size,
            max_position_embeddings=settings.max_seq_length,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        # the pooler is unused (mean pooling) but saved, so that loads are clean
        bert = BertModel(config)
        opt = torch.optim.AdamW(bert.parameters(), lr=settings.learning_rate, weight_decay=0.01)
        bert.train()
        for step, (a, b) in enumerate(
            _contrastive_batches(tables, settings.batch_size, settings.steps, seed)
        ):
            _set_lr(
                opt,
                lr_at(step, settings.steps, max(1, settings.steps // 10), settings.learning_rate),
            )
            enc = tokenizer(
                a + b,
                padding=True,
                truncation=True,
                max_length=settings.max_seq_length,
                return_tensors="pt",
            )
            emb = mean_pool(bert(**enc).last_hidden_state, enc["attention_mask"])
            ea, eb = emb[: len(a)], emb[len(a) :]
            logits = ea @ eb.T / settings.temperature
            target = torch.arange(len(a))
            loss = (
                torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)
            ) / 2
            losses.append(_optimizer_step(loss, opt, bert.parameters()))
            if step % 25 == 0 or step == settings.steps - 1:
                log.info("tiny-embed step %d/%d loss %.4f", step + 1, settings.steps, losses[-1])
        bert.eval()
    info = {
        "model": "builtin:tiny-embed",
        "architecture": "BertModel + Pooling(mean) + Normalize",
        "parameters": count_parameters(bert),
        "vocab_size": len(tokenizer),
        "dimension": settings.hidden_size,
        **_training_info(losses, settings, seed, corpus_dir),
        "torch": torch.__version__,
    }
    with (
        tempfile.TemporaryDirectory(prefix="tiny-embed-bert.") as bert_dir,
        atomic_dir(out_dir, fixed_modes=True) as tmp,
    ):
        bert.save_pretrained(bert_dir)
        tokenizer.save_pretrained(bert_dir)
        transformer = Transformer(bert_dir, max_seq_length=settings.max_seq_length)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        st = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        st.save(str(tmp), create_model_card=False)
        write_json(info, tmp / "build_info.json")
    return info
