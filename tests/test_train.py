"""LoRA training (polyculture.train) on the built-in tiny chat model and a six-turn fixture:
assistant-only masks, truncation drops, LoRA targets, training moves the adapter, seeded
determinism, resume after a crash and after a SIGKILL, stale checkpoints, the launcher and a
two-process group on the CPU."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from polyculture import train as T
from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, DropRateError, InputError

FIXTURE = Path(__file__).parent / "data" / "train_small.jsonl"
LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

# A Llama-3.1-style template without {% generation %} markers (the reference model's layout).
LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Not prefix-preserving: the last assistant turn is rendered differently from earlier ones.
NOT_PREFIX_PRESERVING = (
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
    "{% if loop.last %}{{ ' [end]' }}{% else %}{{ '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_chat(builtin_models: dict[str, Path]) -> str:
    return str(builtin_models["tiny-chat"])


@pytest.fixture(scope="module")
def tokenizer(tiny_chat: str):
    return T.load_tokenizer(tiny_chat)


@pytest.fixture(scope="module")
def conversations() -> list[list[dict[str, str]]]:
    return T.read_conversations(FIXTURE)


def settings(**kw) -> T.TrainSettings:
    base = dict(
        max_steps=8,
        learning_rate=1e-2,
        max_length=512,
        save_steps=4,
        logging_steps=1,
        seed=7,
        max_drop_rate=0.0,
        report_to=(),
    )
    return T.TrainSettings(**{**base, **kw})


def make_job(model: str, out: Path, data: Path = FIXTURE, **kw) -> T.TrainJob:
    return T.TrainJob(
        data=str(data),
        base_model=model,
        run_dir=str(out / "run"),
        adapter_dir=str(out / "adapter"),
        loss_path=str(out / "loss.parquet"),
        drops_path=str(out / "drops.parquet"),
        summary_path=str(out / "summary.json"),
        group="full",
        settings=settings(**kw),
        cpu_threads=1,
    )


def adapter_bytes(out: Path) -> bytes:
    return (out / "adapter" / "adapter_model.safetensors").read_bytes()


def masked_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    """Contiguous runs of masked token ids."""
    runs: list[list[int]] = []
    prev = 0
    for t, m in zip(ids, mask, strict=True):
        if m and not prev:
            runs.append([])
        if m:
            runs[-1].append(t)
        prev = m
    return runs


# ---------------------------------------------------------------------------------------------
# masks


def test_fixture_is_six_turn_dialogues_and_general_examples(conversations) -> None:
    lengths = sorted({len(c) for c in conversations})
    assert lengths == [2, 6]
    six = [c for c in conversations if len(c) == 6]
    assert len(six) == 12 and len(conversations) == 16  # 3:1 cultural to general
    for c in six:
        assert [m["role"] for m in c] == ["user", "assistant"] * 3


def test_template_mask_covers_exactly_the_assistant_turns(tokenizer, conversations) -> None:
    assert T.resolve_mask_method(tokenizer, "auto") == "template"
    for conv in conversations:
        ids, mask = T.assistant_mask_from_template(tokenizer, conv)
        runs = masked_runs(ids, mask)
        assistant = [m["content"] for m in conv if m["role"] == "assistant"]
        # one masked run per assistant turn: its content and the end-of-turn token, nothing else
        assert [tokenizer.decode(r) for r in runs] == [a + tokenizer.eos_token for a in assistant]
        unmasked = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        for m in conv:
            if m["role"] == "user":
                assert m["content"] in unmasked
        assert sum(mask) < len(mask)


def test_prefix_mask_equals_template_mask_on_the_tiny_template(tokenizer, conversations) -> None:
    for conv in conversations:
        assert T.assistant_mask_by_prefix(tokenizer, conv) == T.assistant_mask_from_template(
            tokenizer, conv
        )


def test_prefix_mask_on_a_template_without_generation_markers(tiny_chat, conversations) -> None:
    tok = T.load_tokenizer(tiny_chat)
    tok.chat_template = LLAMA3_LIKE
    assert not T.has_generation_markers(LLAMA3_LIKE)
    assert T.resolve_mask_method(tok, "auto") == "prefix"
    with pytest.raises(ConfigError, match="generation"):
        T.resolve_mask_method(tok, "template")
    for conv in conversations:
        ids, mask = T.assistant_mask_by_prefix(tok, conv)
        runs = [tok.decode(r) for r in masked_runs(ids, mask)]
        assert runs == [m["content"] + "<|eot_id|>" for m in conv if m["role"] == "assistant"]


def test_template_that_is_not_prefix_preserving_is_masked_by_content(
    tiny_chat, conversations
) -> None:
    tok = T.load_tokenizer(tiny_chat)
    tok.chat_template = NOT_PREFIX_PRESERVING
    for conv in conversations:
        ids, mask = T.assistant_mask_by_prefix(tok, conv)
        runs = [tok.decode(r) for r in masked_runs(ids, mask)]
        assert [r.strip() for r in runs] == [
            m["content"].strip() for m in conv if m["role"] == "assistant"
        ]
    # a template that rewrites the assistant's text cannot be masked: refused, naming the turn
    tok.chat_template = NOT_PREFIX_PRESERVING.replace("m['content']", "m['content'] | upper")
    with pytest.raises(ConfigError, match="assistant turn 2"):
        T.assistant_mask_by_prefix(tok, conversations[0])


def test_labels_are_ignored_outside_the_mask(tokenizer, conversations) -> None:
    ex = T.tokenize_conversation(tokenizer, conversations[0], max_length=4096)
    ids, mask = T.assistant_mask_from_template(tokenizer, conversations[0])
    assert ex is not None and ex.input_ids == ids
    assert [lab != T.IGNORE_INDEX for lab in ex.labels] == [bool(m) for m in mask]
    assert all(lab == t for lab, t in zip(ex.labels, ex.input_ids, strict=True) if lab != -100)


def test_truncation_drops_examples_left_without_assistant_tokens(tokenizer, conversations) -> None:
    first_assistant = [
        T.assistant_mask_from_template(tokenizer, c)[1].index(1) for c in conversations
    ]
    cut = min(first_assistant)  # keeps the start of every example but no assistant token
    right = DropCounter(stage=T.DROP_STAGE, group="full")
    kept = T.build_examples(tokenizer, conversations, settings(max_length=cut), right)
    assert kept == [] and right.total == 16 and right.dropped == 16
    assert right.reasons == {"no_assistant_tokens_after_truncation": 16}
    with pytest.raises(DropRateError, match="16 of 16"):
        right.check(0.5)
    # left truncation keeps the end of each conversation, i.e. the final assistant answer
    left = DropCounter(stage=T.DROP_STAGE, group="full")
    kept = T.build_examples(
        tokenizer, conversations, settings(max_length=cut, truncation_side="left"), left
    )
    assert len(kept) == 16 and left.dropped == 0
    assert all(len(e["input_ids"]) <= cut and any(x != -100 for x in e["labels"]) for e in kept)
    # a partly cut example keeps the assistant tokens that remain
    some = max(first_assistant) + 3
    counter = DropCounter(stage=T.DROP_STAGE)
    kept = T.build_examples(tokenizer, conversations, settings(max_length=some), counter)
    assert counter.dropped == 0 and all(len(e["input_ids"]) <= some for e in kept)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"text": "no messages"}, "record 1 has no 'messages' key"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages\\[0\\].role is 'bot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "content must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ],
)
def test_bad_training_records_are_named(tmp_path: Path, line: dict, message: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        T.read_conversations(path)
    assert str(path) in str(err.value)


def test_empty_training_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no training examples"):
        T.read_conversations(path)


# ---------------------------------------------------------------------------------------------
# settings


def test_schema_defaults_are_the_paper_values(repo_root: Path) -> None:
    from snakemake.utils import validate

    section: dict = {}
    validate(section, str(repo_root / "schemas" / "config-train.schema.yaml"), set_default=True)
    assert section["gpus"] == 8 and section["base_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    s = T.settings_from_config(section, seed=1234)
    assert (s.lora_r, s.lora_alpha, s.target_modules) == (16, 32, "all-linear")
    assert (s.learning_rate, s.lr_scheduler, s.warmup_ratio) == (1e-5, "cosine", 0.1)
    assert (s.per_device_batch_size, s.gradient_accumulation_steps) == (2, 1)
    assert (s.max_steps, s.max_length, s.precision) == (1000, 4096, "auto")
    assert s.seed == 1234 + section["seed_offset"]
    assert T.use_bf16(s, cuda=True) and not T.use_bf16(s, cuda=False)
    args = T.training_arguments(s, "/tmp/unused", bf16=False, cuda=False)
    assert args.get_warmup_steps(1000) == 100
    assert args.lr_scheduler_type == "cosine" and args.max_steps == 1000
    assert args.per_device_train_batch_size == 2 and args.gradient_accumulation_steps == 1


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="train.warmup_ratio"):
        T.TrainSettings.from_mapping({"warmup_ratio": 1.5})
    with pytest.raises(ConfigError, match="unknown training setting"):
        T.TrainSettings.from_mapping({"lr": 1e-5})
    with pytest.raises(ConfigError, match="train.max_steps"):
        T.TrainSettings.from_mapping({"max_steps": 0})


def test_adapters_must_be_applied_to_the_training_base() -> None:
    ok = [{"name": "a", "model": "builtin:tiny-chat", "adapter": "full"}]
    T.check_adapter_bases(ok, "builtin:tiny-chat")
    T.check_adapter_bases([{"name": "b", "model": "x/y"}], "builtin:tiny-chat")  # no adapter
    with pytest.raises(ConfigError, match=r"eval_models\[0\].model"):
        T.check_adapter_bases(ok, "meta-llama/Llama-3.1-8B-Instruct")
    # an adapter from outside the workflow is no training variant: config_check reads its base
    outside = [{"name": "o", "model": "x/y", "adapter": "/scratch/me/lora"}]
    T.check_adapter_bases(outside, "builtin:tiny-chat", ["full"])
    with pytest.raises(ConfigError, match=r"eval_models\[0\].model"):
        T.check_adapter_bases(ok, "meta-llama/Llama-3.1-8B-Instruct", ["full"])


# ---------------------------------------------------------------------------------------------
# model and training


def test_lora_targets_every_linear_layer_of_the_tiny_llama(tiny_chat: str) -> None:
    model = T.load_lora_model(tiny_chat, settings(), bf16=False)
    assert T.lora_target_names(model) == LINEAR
    n_layers = model.base_model.model.config.num_hidden_layers
    adapted = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)]
    assert len(adapted) == 7 * n_layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert model.peft_config["default"].r == 16 and model.peft_config["default"].lora_alpha == 32


def test_training_moves_the_adapter_and_lowers_the_loss(tiny_chat: str, tmp_path: Path) -> None:
    # the whole fixture in every batch: the same batch repeated, so the loss must fall
    out = tmp_path / "a"
    summary = T.run_job(
        make_job(
            tiny_chat,
            out,
            per_device_batch_size=16,
            lr_scheduler="constant",
            learning_rate=1e-3,
            max_steps=4,
        )
    )
    losses = pl.read_parquet(out / "loss.parquet")
    assert losses["step"].to_list() == [1, 2, 3, 4]
    assert losses["loss"][-1] < losses["loss"][0]
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 16 and {m.rsplit(".", 1)[-1] for m in config["target_modules"]} == LINEAR
    assert config["target_modules"] == sorted(config["target_modules"])  # same bytes every run
    assert summary["examples_used"] == 16 and summary["steps"] == 4
    assert summary["examples_heldout"] == 0 and summary["final_heldout_loss"] is None
    assert summary["resumed_from_step"] == 0
    assert summary["resume"] == {
        "from_checkpoint": None,
        "resumed_steps": 0,
        "trained_steps": 4,
        "refused": [],
    }
    assert losses["heldout_loss"].is_null().all()
    drops = pl.read_parquet(out / "drops.parquet")
    assert drops.row(0, named=True)["total"] == 16 and drops["dropped"].sum() == 0
    assert json.loads((out / "summary.json").read_text())["settings"]["lr_scheduler"] == "constant"


def test_seeded_runs_are_identical_and_seeds_matter(tiny_chat: str, tmp_path: Path) -> None:
    # a: in this process; b: the same job in a fresh process (another hash seed); c: another seed
    T.run_job(make_job(tiny_chat, tmp_path / "a", seed=7))
    T.launch(make_job(tiny_chat, tmp_path / "b", seed=7), 1, tmp_path / "b.log")
    T.run_job(make_job(tiny_chat, tmp_path / "c", seed=8))
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/README.md",
        "loss.parquet",
        "drops.parquet",
        "summary.json",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "b" / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert adapter_bytes(tmp_path / "a") != adapter_bytes(tmp_path / "c")


class CrashAfterSave(TrainerCallback):
    """Stands in for a kill right after checkpoint `step` was written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after checkpoint {self.step}")


def test_rerun_after_a_crash_resumes_and_matches_a_straight_run(
    tiny_chat: str, tmp_path: Path
) -> None:
    # 6 steps of 8 per pass over the fixture: the run ends inside an epoch
    kw = dict(lora_dropout=0.1, max_steps=6, save_steps=3)
    straight = tmp_path / "straight"
    T.run_job(make_job(tiny_chat, straight, **kw))
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        T.run_job(make_job(tiny_chat, broken, **kw), callbacks=[CrashAfterSave(3)])
    assert not (broken / "adapter").exists()  # no half adapter
    assert sorted(T.checkpoint_steps(broken / "run")) == [3]
    summary = T.run_job(make_job(tiny_chat, broken, **kw))
    assert summary["resumed_from_step"] == 3 and summary["steps"] == 6
    # bitwise equal on the CPU: weights, optimizer, scheduler, RNG and data order are restored
    assert adapter_bytes(broken) == adapter_bytes(straight)
    assert pl.read_parquet(broken / "loss.parquet").equals(
        pl.read_parquet(straight / "loss.parquet")
    )
    # the summaries differ only in the record of where training started
    resumed = json.loads((broken / "summary.json").read_text())
    plain = json.loads((straight / "summary.json").read_text())
    assert resumed.pop("resume") == {
        "from_checkpoint": "checkpoint-3",
        "resumed_steps": 3,
        "trained_steps": 3,
        "refused": [],
    }
    assert plain.pop("resume")["resumed_steps"] == 0
    assert resumed == plain
    # a rerun of a finished run (adapter lost) takes the last checkpoint: no extra step
    shutil.rmtree(broken / "adapter")
    again = T.run_job(make_job(tiny_chat, broken, **kw))
    assert again["resumed_from_step"] == 6 and again["steps"] == 6
    assert again["resume"]["trained_steps"] == 0
    assert adapter_bytes(broken) == adapter_bytes(straight)
    assert pl.read_parquet(broken / "loss.parquet").equals(
        pl.read_parquet(straight / "loss.parquet")
    )


def test_sigkill_then_rerun_resumes_from_the_last_complete_checkpoint(
    tiny_chat: str, tmp_path: Path
) -> None:
    kw = dict(max_steps=24, save_steps=4, learning_rate=1e-3)
    straight = tmp_path / "straight"
    T.run_job(make_job(tiny_chat, straight, **kw))
    out = tmp_path / "killed"
    job = make_job(tiny_chat, out, **kw)
    job_file = out / "job.json"
    job_file.parent.mkdir(parents=True)
    job_file.write_text(json.dumps(job.to_json()), encoding="utf-8")
    proc = subprocess.Popen(
        T.launch_command(job_file, 1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 300
    while not T.checkpoint_complete(out / "run" / "checkpoint-8"):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter").exists()
    latest = T.latest_complete_checkpoint(out / "run")
    assert latest is not None
    step = T.checkpoint_step(latest)
    assert 8 <= step < 24
    summary = T.run_job(job)
    assert summary["resumed_from_step"] == step and summary["steps"] == 24
    assert adapter_bytes(out) == adapter_bytes(straight)


def test_checkpoints_of_another_run_or_cut_short_are_not_resumed(
    tiny_chat: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        T.run_job(make_job(tiny_chat, out), callbacks=[CrashAfterSave(4)])
    # a checkpoint cut short by a kill (no trainer_state.json) is refused, the complete one used
    partial = out / "run" / "checkpoint-6"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"half")
    job = make_job(tiny_chat, out)
    fingerprint = T.run_fingerprint(job, 1)
    with caplog.at_level("INFO", logger="polyculture.train"):
        plan = T.prepare_run_dir(job, fingerprint)
    assert plan.checkpoint == out / "run" / "checkpoint-4" and plan.step == 4
    assert [(r["checkpoint"], r["step"]) for r in plan.refused] == [("checkpoint-6", 6)]
    assert "cut short" in plan.refused[0]["reason"]
    assert "refusing" in caplog.text and "checkpoint-6" in caplog.text
    assert not partial.exists()
    # other settings: the old checkpoints are refused (fingerprint mismatch, naming what
    # differs), removed, and training starts from scratch
    caplog.clear()
    other = make_job(tiny_chat, out, learning_rate=5e-3)
    with caplog.at_level("INFO", logger="polyculture.train"):
        summary = T.run_job(other)
    assert summary["resumed_from_step"] == 0 and summary["resume"]["from_checkpoint"] is None
    refused = summary["resume"]["refused"]
    assert [r["checkpoint"] for r in refused] == ["checkpoint-4"]
    assert refused[0]["reason"].startswith("fingerprint mismatch")
    assert "settings.learning_rate: 0.01 → 0.005" in refused[0]["reason"]
    assert "refusing" in caplog.text and "fingerprint mismatch" in caplog.text
    assert json.loads((out / "run" / T.FINGERPRINT_FILE).read_text())["settings"][
        "learning_rate"
    ] == pytest.approx(5e-3)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["resume"]["refused"] == refused


def test_bf16_training_steps_run(tiny_chat: str, tmp_path: Path) -> None:
    summary = T.run_job(make_job(tiny_chat, tmp_path / "bf", precision="bf16", max_steps=2))
    assert summary["precision"] == "bf16" and summary["steps"] == 2


# ---------------------------------------------------------------------------------------------
# launching


def test_launch_command_is_one_process_group() -> None:
    assert T.launch_command("job.json", 0)[1:] == ["-m", "polyculture.train", "--job", "job.json"]
    assert T.launch_command("job.json", 1)[1:] == ["-m", "polyculture.train", "--job", "job.json"]
    cmd = T.launch_command("job.json", 8)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd[cmd.index("--num_machines") + 1] == "1"
    assert "--multi_gpu" in cmd and cmd[-4:] == ["-m", "polyculture.train", "--job", "job.json"]
    assert T.threads_per_process(8, 8) == 1 and T.threads_per_process(2, 0) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_a_gpu_group_without_cuda_is_refused(tiny_chat: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.gpus"):
        T.launch(make_job(tiny_chat, tmp_path / "g"), 8)


def test_two_process_group_trains_one_adapter(tiny_chat: str, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    log = tmp_path / "train.log"
    # with a held-out split, evaluated by both processes on their shares of it
    job = make_job(tiny_chat, out, heldout_share=0.25, eval_steps=4)
    T.launch(job, 2, log, allow_cpu_group=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == 8
    assert summary["examples_used"] == 13 and summary["examples_heldout"] == 3
    losses = pl.read_parquet(out / "loss.parquet")
    # 13 training examples: 7 per process (the sampler pads to 14), 4 batches of 2 per pass;
    # 8 steps are two passes
    assert losses["epoch"][-1] == pytest.approx(2.0)
    held = losses.filter(pl.col("heldout_loss").is_not_null())
    assert held["step"].to_list() == [4, 8] and held["heldout_loss"].is_finite().all()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    text = log.read_text()
    assert text.count("accelerate.commands.launch") == 1 and "2 process(es)" in text


# ---------------------------------------------------------------------------------------------
# tables and figure


def test_loss_table_and_figure(tmp_path: Path) -> None:
    history = [
        {"loss": 2.0, "learning_rate": 1e-3, "epoch": 0.5, "grad_norm": 1.0, "step": 1},
        {"loss": 1.5, "learning_rate": 5e-4, "epoch": 1.0, "grad_norm": 0.5, "step": 2},
        {"train_runtime": 1.0, "train_loss": 1.75, "epoch": 1.0, "step": 2},
    ]
    table = T.loss_table(history)
    assert table.columns == list(T.LOSS_COLUMNS) and table["loss"].to_list() == [2.0, 1.5]
    assert table["heldout_loss"].to_list() == [None, None]
    # held-out evaluations join their step; one at a step without a training row gets its own
    held = T.loss_table(
        [
            *history[:2],
            {"eval_loss": 1.8, "epoch": 1.0, "step": 2},
            {"eval_loss": 1.7, "epoch": 1.5, "step": 3},
        ]
    )
    assert held["step"].to_list() == [1, 2, 3]
    assert held["heldout_loss"].to_list() == [None, 1.8, 1.7]
    assert held["loss"].to_list() == [2.0, 1.5, None]
    fig = tmp_path / "loss.png"
    T.plot_loss(table, fig, "test")
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    digest = hashlib.sha256(fig.read_bytes()).hexdigest()
    T.plot_loss(table, fig, "test")
    assert hashlib.sha256(fig.read_bytes()).hexdigest() == digest
