"""Built-in tiny models: corpus tables, tokenizer round trips, chat template assistant mask,
packing, deterministic rebuilds, and the models the workflow's own rules build."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from polyculture.backends.builtin.tiny_corpus import (
    CORPUS_FILES,
    TASKS,
    build_chat_corpus,
    corpus_sha256,
    load_corpus_tables,
    numbered_list,
    tokenizer_texts,
    translation_pairs,
)
from polyculture.backends.builtin.tiny_models import (
    CHAT_TEMPLATE,
    TinyChatSettings,
    TinyEmbedSettings,
    build_tiny_chat,
    build_tiny_embed,
    encode_conversations,
    lr_at,
    masked_lm_loss,
    mean_pool,
    pack_sequences,
    train_tokenizer,
)
from polyculture.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "resources" / "demo" / "tiny_chat"

# One string per script the tokenizer must round-trip (several not in the corpus).
SCRIPT_SAMPLES = {
    "latin_da": "Rødgrød med fløde — æble, ø og å.",
    "latin_nl": "Café 's avonds: één ijsje, geëxperimenteerd.",
    "latin_pt": "Informação, coração, pães e avós à noite.",
    "latin_es": "¿Dónde está el niño? ¡Señor Muñoz!",
    "latin_de": "Größere Übungen für Bären, Straße.",
    "latin_fr": "Œuvre naïve, garçon, été, Noël.",
    "latin_id": "Saya suka makan sate ayam di pasar malam.",
    "latin_ha": "Ƙasar Hausa tana da ɗimbin al'adu; ɓera da ƴaƴa.",
    "latin_su": "Abdi badé angkat ka Bandung énjing-énjing.",
    "latin_az": "Qış gəldi, uşaqlar şəhərə gedir; ğ, ı, ö, ü, ç, ş, ə.",
    "greek": "Η Ελλάδα έχει πολλά νησιά και ωραίο φαγητό.",
    "arabic": "المكتبة مفتوحة كل يوم ما عدا الجمعة.",
    "persian": "کتاب‌خانه هر روز باز است؛ گ چ پ ژ.",
    "cyrillic": "Щука плывёт в холодной реке, съешь ещё.",
    "chinese": "我们明天去北京看长城。",
    "japanese": "東京の桜はとてもきれいです。カタカナも。",
    "hangul": "서울의 겨울은 춥고 눈이 많이 옵니다.",
    "geez_amharic": "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
    "bengali": "ঢাকা বাংলাদেশের রাজধানী।",
    "assamese": "গুৱাহাটী অসমৰ আটাইতকৈ ডাঙৰ চহৰ।",
    "mixed": "tab\there, newline\nand emoji 🙂 plus  double  spaces ",
}


@pytest.fixture(scope="module")
def tables():
    return load_corpus_tables(CORPUS)


@pytest.fixture(scope="module")
def tokenizer(tables):
    return train_tokenizer(tokenizer_texts(tables), 4096)


# --- corpus tables ---------------------------------------------------------------------------


def test_corpus_has_every_task_and_survey_lists(tables):
    convs = build_chat_corpus(tables, seed=7)
    assert len(convs) == sum(tables.tasks["counts"][t] for t in TASKS) >= 3000
    surveys = [c for c in convs if c[-1]["content"].startswith("1. ")]
    assert len(surveys) >= tables.tasks["counts"]["survey"]
    for conv in surveys[:200]:
        lines = conv[-1]["content"].split("\n")
        assert [int(re.match(r"^(\d+)\. \S", line).group(1)) for line in lines] == list(
            range(1, 11)
        )
    # every conversation alternates user/assistant after an optional system turn
    for conv in convs:
        roles = [m["role"] for m in conv if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2)


def test_corpus_is_seeded(tables):
    assert build_chat_corpus(tables, 3) == build_chat_corpus(tables, 3)
    assert build_chat_corpus(tables, 3) != build_chat_corpus(tables, 4)


def test_survey_answers_are_in_the_prompt_language(tables):
    """A survey answer uses the prompt language's own people and patterns."""
    for conv in build_chat_corpus(tables, 1)[:600]:
        answer = conv[-1]["content"]
        if not answer.startswith("1. "):
            continue
        prompt = conv[-2]["content"]
        lang = next(
            code
            for code, s in tables.survey.items()
            if any(p.split("{topic}")[0] in prompt for p in s.prompts + s.extra_prompts)
        )
        people = [p.lower() for p in tables.survey[lang].people]
        for line in answer.split("\n"):
            text = line.split(". ", 1)[1].lower()
            assert any(text.startswith(p) for p in people), (lang, line)


def test_translation_pairs_group_translations(tables):
    pairs = translation_pairs(tables)
    groups: dict[str, set[str]] = {}
    for gid, code, _ in pairs:
        groups.setdefault(gid, set()).add(code)
    assert groups["p:s1"] == set(tables.parallel["s1"])
    assert all(len(langs) >= 2 for langs in groups.values())


def _copy_corpus(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in CORPUS_FILES:
        shutil.copy(CORPUS / name, dest / name)
    return dest


def test_bad_tables_fail_naming_file_and_key(tmp_path):
    d = _copy_corpus(tmp_path / "c")
    (d / "short_answers.tsv").write_text(
        "language\tcountry\tquestion\tanswer\nxx\tX\tWhat?\tThat\n", encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"short_answers.tsv.*line 2 language.*'xx'"):
        load_corpus_tables(d)
    _copy_corpus(d)
    survey = yaml.safe_load((d / "survey.yaml").read_text(encoding="utf-8"))
    survey["da"]["prompts"][0] = "no slot here"
    (d / "survey.yaml").write_text(yaml.safe_dump(survey, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InputError, match=r"survey.yaml.*da.prompts.*\{topic\}"):
        load_corpus_tables(d)
    _copy_corpus(d)
    tasks = yaml.safe_load((d / "tasks.yaml").read_text(encoding="utf-8"))
    del tasks["stance_statements"]["press"]
    (d / "tasks.yaml").write_text(yaml.safe_dump(tasks, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InputError, match=r"tasks.yaml.*stance_statements.*survey topic ids"):
        load_corpus_tables(d)
    (d / "tasks.yaml").unlink()
    with pytest.raises(InputError, match=r"tasks.yaml.*missing corpus file"):
        load_corpus_tables(d)


def test_corpus_hash_follows_the_files(tmp_path):
    d = _copy_corpus(tmp_path / "c")
    h = corpus_sha256(d)
    assert h == corpus_sha256(CORPUS)
    with (d / "statements.yaml").open("a", encoding="utf-8") as f:
        f.write("\n")
    assert corpus_sha256(d) != h


# --- tokenizer and chat template -------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(SCRIPT_SAMPLES))
def test_tokenizer_round_trips_every_script(tokenizer, script):
    text = SCRIPT_SAMPLES[script]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_is_deterministic_and_compresses_corpus_text(tables, tokenizer):
    again = train_tokenizer(tokenizer_texts(tables), 4096)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    text = tables.parallel["s3"]["da"]
    assert len(tokenizer(text)["input_ids"]) < len(text.encode()) / 2
    assert len(tokenizer) == 4096
    assert tokenizer.padding_side == "left"


def test_chat_template_masks_exactly_the_assistant_turns(tokenizer):
    conv = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Translate into Danish: Thank you."},
        {"role": "assistant", "content": "Mange tak."},
        {"role": "user", "content": "Og på græsk?"},
        {"role": "assistant", "content": "Ευχαριστώ πολύ.\n1. ναι"},
    ]
    enc = tokenizer.apply_chat_template(
        conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask)
    runs, cur = [], []
    for t, m in zip(ids, mask, strict=True):
        if m:
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    assert [tokenizer.decode(r) for r in runs] == ["Mange tak.</s>", "Ευχαριστώ πολύ.\n1. ναι</s>"]
    assert ids[0] == tokenizer.bos_token_id
    rendered = tokenizer.apply_chat_template(conv[:2], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("Translate into Danish: Thank you.</s>\n<|assistant|>\n")
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_rendered_template_tokenizes_like_the_template(tokenizer):
    """Backends render the template to text and tokenize it: special and role tokens must map
    back to the same ids."""
    conv = [{"role": "user", "content": "Hvad er den mest populære sport i Danmark?"}]
    text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    direct = tokenizer.apply_chat_template(
        conv, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    assert ids == direct["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|assistant|>") in ids


def test_xgrammar_reads_the_tokenizer_as_byte_level(tokenizer):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    assert info.vocab_type == xgr.VocabType.BYTE_LEVEL
    assert tokenizer.eos_token_id in info.stop_token_ids


def test_chat_template_rejects_unknown_roles(tokenizer):
    with pytest.raises(Exception, match="unknown role tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_pack_sequences_keeps_conversations_whole_and_labels_assistant_tokens():
    seqs = [
        ([1, 5, 6, 2], [0, 0, 1, 1]),
        ([1, 7, 2], [0, 1, 1]),
        ([1, 8, 9, 9, 9, 9, 2], [0, 0, 0, 1, 1, 1, 1]),
    ]
    ids, att, labels, cut = pack_sequences(seqs, seq_len=6, pad_id=0)
    assert cut == 1  # the 7-token conversation is cut at 6
    assert ids.shape[1] == 6 and int(att.sum()) == 4 + 3 + 6
    assert sorted(ids[att.bool()].tolist()) == sorted([1, 5, 6, 2, 1, 7, 2, 1, 8, 9, 9, 9, 9])
    assert sorted(labels[labels != -100].tolist()) == sorted([6, 2, 7, 2, 9, 9, 9])
    assert ((labels == -100) | (att == 1)).all()


def test_masked_loss_equals_full_loss(tokenizer, tables):
    from polyculture.backends.builtin.tiny_models import make_tiny_chat_model

    seqs = encode_conversations(tokenizer, build_chat_corpus(tables, 1)[:40])
    ids, att, labels, _ = pack_sequences(seqs, 256, tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = make_tiny_chat_model(
        TinyChatSettings(
            hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64
        ),
        tokenizer,
    )
    with torch.no_grad():
        full = model(input_ids=ids[:2], attention_mask=att[:2], labels=labels[:2]).loss
        fast = masked_lm_loss(model, ids[:2], att[:2], labels[:2])
    assert torch.allclose(full, fast, atol=1e-5)


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] >= 0.1


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]])
    out = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(out, torch.tensor([[2**-0.5, 2**-0.5]]))


# --- deterministic rebuilds ------------------------------------------------------------------


def _small_corpus(dest: Path) -> Path:
    d = _copy_corpus(dest)
    tasks = yaml.safe_load((d / "tasks.yaml").read_text(encoding="utf-8"))
    tasks["counts"] = {t: 12 for t in TASKS}
    (d / "tasks.yaml").write_text(yaml.safe_dump(tasks, allow_unicode=True), encoding="utf-8")
    return d


def _digests(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


SMALL_CHAT = TinyChatSettings(
    vocab_size=1024,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    intermediate_size=64,
    max_position_embeddings=512,
    steps=4,
    warmup_steps=2,
    batch_size=2,
    seq_len=256,
)
SMALL_EMBED = TinyEmbedSettings(
    vocab_size=1024,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    steps=3,
    batch_size=8,
)


def test_rebuild_gives_identical_bytes(tmp_path):
    corpus = _small_corpus(tmp_path / "corpus")
    a = build_tiny_chat(corpus, tmp_path / "a" / "tiny-chat", SMALL_CHAT, seed=11)
    b = build_tiny_chat(corpus, tmp_path / "b" / "tiny-chat", SMALL_CHAT, seed=11)
    assert a == b
    da, db = _digests(tmp_path / "a" / "tiny-chat"), _digests(tmp_path / "b" / "tiny-chat")
    assert {
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "build_info.json",
    } <= set(da)
    assert da == db
    build_tiny_embed(corpus, tmp_path / "a" / "tiny-embed", SMALL_EMBED, seed=12)
    build_tiny_embed(corpus, tmp_path / "b" / "tiny-embed", SMALL_EMBED, seed=12)
    ea, eb = _digests(tmp_path / "a" / "tiny-embed"), _digests(tmp_path / "b" / "tiny-embed")
    assert "modules.json" in ea and ea == eb
    info = json.loads((tmp_path / "a" / "tiny-chat" / "build_info.json").read_text())
    assert info["steps"] == 4 and info["corpus_sha256"] == corpus_sha256(corpus)
    assert not any(k in json.dumps(info) for k in ("time", "date"))


# --- the models built by the workflow's rules ------------------------------------------------

# The demo's own survey wordings (with a topic phrase not in the corpus) and held-out wordings.
SURVEY_PROMPTS = [
    (
        "en",
        "Imagine the following scenario: Person A is a researcher who interviews 10 "
        "representative citizens and asks each of them for their opinion on getting divorced. "
        "Please write plausible brief summaries of the 10 interviews. "
        "Output format: 1. <summary> 2. <summary> etc...",
    ),
    (
        "en",
        "Consider a researcher, Person A, who holds interviews with 10 representative citizens "
        "on the subject of the death penalty. Provide a plausible brief summary of each "
        "interview. Output format: 1. <summary> 2. <summary> etc...",
    ),
    (
        "da",
        "Forestil dig følgende scenarie: Person A er forsker og interviewer 10 repræsentative "
        "borgere om deres holdning til demokrati. Skriv troværdige korte resuméer af de 10 "
        "interviews. Outputformat: 1. <resumé> 2. <resumé> osv...",
    ),
    (
        "da",
        "En forsker holder interviews med 10 repræsentative borgere om skilsmisse. Giv et kort og "
        "troværdigt resumé af hvert interview. Outputformat: 1. <resumé> 2. <resumé> osv...",
    ),
]
NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+\S", re.MULTILINE)


def parses_as_numbered_list(text: str, min_items: int = 5) -> bool:
    """At least `min_items` lines '1. …', '2. …' numbered from 1 in order."""
    nums = [int(n) for n in NUMBERED.findall(text)]
    return len(nums) >= min_items and nums == list(range(1, len(nums) + 1))


def test_numbered_list_check_accepts_the_corpus_format():
    assert parses_as_numbered_list(numbered_list([f"item {i}" for i in range(10)]))
    assert not parses_as_numbered_list("1. one\n3. three\n4. four\n5. five\n6. six")
    assert not parses_as_numbered_list("just prose")


def test_tiny_chat_loads_generates_and_answers_surveys_as_lists(builtin_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = builtin_models["tiny-chat"]
    info = json.loads((path / "build_info.json").read_text())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 5_000_000 and n == info["parameters"]
    assert info["final_loss"] < info["first_loss"] / 2, info
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert tok.padding_side == "left"
    convs = [[{"role": "user", "content": p}] for _, p in SURVEY_PROMPTS]
    enc = tok.apply_chat_template(
        convs, add_generation_prompt=True, return_dict=True, return_tensors="pt", padding=True
    )
    torch.manual_seed(0)
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=0.7,
        top_p=0.95,
        max_new_tokens=320,
        num_return_sequences=3,
    )
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts)
    share = sum(parses_as_numbered_list(t) for t in texts) / len(texts)
    assert share >= 0.5, texts


def test_tiny_embed_encodes_unit_vectors_and_brings_translations_together(builtin_models, tables):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(builtin_models["tiny-embed"]), device="cpu")
    sids = sorted(tables.parallel)
    en = model.encode([tables.parallel[s]["en"] for s in sids])
    da = model.encode([tables.parallel[s]["da"] for s in sids])
    assert en.dtype == np.float32 and en.shape == (len(sids), 128)
    assert np.allclose(np.linalg.norm(en, axis=1), 1.0, atol=1e-5)
    sims = en @ da.T
    matched = np.diag(sims).mean()
    unmatched = sims[~np.eye(len(sids), dtype=bool)].mean()
    top1 = (sims.argmax(axis=1) == np.arange(len(sids))).mean()
    assert matched > unmatched + 0.05, (matched, unmatched)
    assert top1 >= 0.3, top1  # chance: 0.1


# --- config section --------------------------------------------------------------------------


def test_config_section_fills_defaults_and_rejects_unknown_keys():
    from snakemake.utils import validate

    schema = str(REPO / "schemas" / "config-builtin-models.schema.yaml")
    cfg = {"tiny_chat": {"steps": 7}}
    validate(cfg, schema, set_default=True)
    assert cfg["corpus_path"] == "resources/demo/tiny_chat" and cfg["vocab_size"] == 4096
    assert cfg["tiny_chat"]["steps"] == 7 and cfg["tiny_chat"]["hidden_size"] == 128
    assert cfg["tiny_embed"]["steps"] >= 1
    # the schema's defaults are the library's defaults
    chat = {k: v for k, v in cfg["tiny_chat"].items() if k != "steps"}
    assert TinyChatSettings(steps=7, **chat) == TinyChatSettings(steps=7)
    assert TinyEmbedSettings(**cfg["tiny_embed"]) == TinyEmbedSettings()
    for bad in ({"tiny_chat": {"layers": 2}}, {"threads": 0}, {"tiny_embed": {"temperature": 0}}):
        with pytest.raises(Exception, match="layers|threads|temperature|minimum|Additional"):
            validate(dict(bad), schema, set_default=True)
