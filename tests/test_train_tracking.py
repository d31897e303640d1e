"""What a training run shows while and after it runs (issue 17): the trackers it reports to
(TensorBoard event files read back), the stratified held-out split and its loss, and a resumed
run's TensorBoard curve without the steps that the interrupted attempt logged twice."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from transformers import TrainerCallback

from polyculture import train as T
from polyculture.errors import ConfigError

FIXTURE = Path(__file__).parent / "data" / "train_small.jsonl"


@pytest.fixture(scope="module")
def tiny_chat(builtin_models: dict[str, Path]) -> str:
    return str(builtin_models["tiny-chat"])


def make_job(model: str, out: Path, **kw) -> T.TrainJob:
    base = dict(
        max_steps=6,
        learning_rate=1e-2,
        max_length=512,
        save_steps=3,
        logging_steps=1,
        seed=7,
        max_drop_rate=0.0,
        report_to=("tensorboard",),
    )
    return T.TrainJob(
        data=str(FIXTURE),
        base_model=model,
        run_dir=str(out / "run"),
        adapter_dir=str(out / "adapter"),
        loss_path=str(out / "loss.parquet"),
        drops_path=str(out / "drops.parquet"),
        summary_path=str(out / "summary.json"),
        group="full",
        settings=T.TrainSettings(**{**base, **kw}),
        cpu_threads=1,
        run_name="test-full",
    )


# ---------------------------------------------------------------------------------------------
# settings


def test_report_to_choices_are_the_trainers_integrations(repo_root: Path) -> None:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert ("none", *sorted(INTEGRATION_TO_CALLBACK)) == T.REPORT_TO_CHOICES
    schema = yaml.safe_load((repo_root / "schemas" / "config-train.schema.yaml").read_text())
    one, many = schema["properties"]["report_to"]["oneOf"]
    assert tuple(one["enum"]) == T.REPORT_TO_CHOICES == tuple(many["items"]["enum"])
    assert schema["properties"]["report_to"]["default"] == "tensorboard"  # offline, no account


def test_report_to_values_and_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    assert T.report_to_tuple("none") == () and T.report_to_tuple(None) == ()
    assert T.report_to_tuple("tensorboard") == ("tensorboard",)
    assert T.report_to_tuple(["tensorboard", "wandb"]) == ("tensorboard", "wandb")
    with pytest.raises(ConfigError, match="cannot be combined"):
        T.report_to_tuple(["none", "wandb"])
    with pytest.raises(ConfigError, match="train.report_to.*'bogus'"):
        T.TrainSettings.from_mapping({"report_to": "bogus"})
    assert T.TrainSettings.from_mapping({"report_to": "none"}).report_to == ()
    # trackers are bookkeeping: they do not enter the resume fingerprint
    assert "report_to" not in T.TrainSettings().science()
    assert "eval_steps" not in T.TrainSettings().science()
    assert "heldout_share" in T.TrainSettings().science()
    T.check_trackers(["tensorboard"])  # installed with the project
    monkeypatch.setitem(T.TRACKER_MODULES, "wandb", ("polyculture_no_such_module",))
    with pytest.raises(ConfigError, match="train.report_to.*pip install polyculture_no_such"):
        T.check_trackers(["wandb"])


def test_tracking_environment_keeps_logs_in_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("TENSORBOARD_LOGGING_DIR", "WANDB_DIR", "MLFLOW_TRACKING_URI", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    env = T.tracking_environment(["tensorboard", "wandb", "mlflow"], tmp_path / "run", "abc")
    assert env["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "run" / "tensorboard" / "abc")
    assert env["WANDB_DIR"] == str(tmp_path / "run")
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path / "run" / "mlruns").as_uri()
    assert T.tracking_environment([], tmp_path, "abc") == {}
    monkeypatch.setenv("WANDB_PROJECT", "mine")  # what the user set wins
    assert T.tracking_environment(["wandb"], tmp_path, "abc")["WANDB_PROJECT"] == "mine"
    # no credential is ever put into the environment by the workflow
    assert not any("KEY" in k or "TOKEN" in k for k in env)


def test_config_section_maps_to_settings(repo_root: Path) -> None:
    from snakemake.utils import validate

    section: dict = {"heldout": {"share": 0.1, "eval_steps": 50}, "report_to": ["tensorboard"]}
    validate(section, str(repo_root / "schemas" / "config-train.schema.yaml"), set_default=True)
    s = T.settings_from_config(section, seed=1)
    assert (s.heldout_share, s.eval_steps, s.report_to) == (0.1, 50, ("tensorboard",))
    defaults: dict = {}
    validate(defaults, str(repo_root / "schemas" / "config-train.schema.yaml"), set_default=True)
    d = T.settings_from_config(defaults, seed=1)
    # the paper trains on every example; the default tracker needs no account
    assert (d.heldout_share, d.report_to) == (0.0, ("tensorboard",))
    assert defaults["push_to_hub"]["enabled"] is False and defaults["merge"] == []


# ---------------------------------------------------------------------------------------------
# held-out split


def test_heldout_split_is_stratified_seeded_and_keeps_every_stratum() -> None:
    strata = [("cultural", "ES", "es")] * 10 + [("cultural", "KR", "ko")] * 5
    strata += [("general", "(general)", "en")] * 4 + [("cultural", "MX", "es")]
    held = T.heldout_split(strata, 0.2, seed=3)
    assert sum(held) == 4  # round(0.2 * 20)
    per = Counter(s for s, h in zip(strata, held, strict=True) if h)
    # proportional: 2 of 10, 1 of 5, 1 of 4 (largest remainder 0.8), none of the lone MX example
    assert per == {
        ("cultural", "ES", "es"): 2,
        ("cultural", "KR", "ko"): 1,
        ("general", "(general)", "en"): 1,
    }
    assert held == T.heldout_split(strata, 0.2, seed=3)  # seeded
    assert any(T.heldout_split(strata, 0.2, seed=s) != held for s in range(4, 10))
    assert T.heldout_split(strata, 0.0, seed=3) == [False] * 20
    # a large share still leaves every stratum one training example
    big = T.heldout_split(strata, 0.9, seed=3)
    for key in set(strata):
        assert any(not h for s, h in zip(strata, big, strict=True) if s == key)
    # a tiny share holds out at least one example
    assert sum(T.heldout_split(strata, 0.01, seed=3)) == 1


def test_training_records_carry_their_stratum(tmp_path: Path) -> None:
    records = T.read_training_records(FIXTURE)
    assert len(records) == 16
    assert Counter(r.source for r in records) == {"cultural": 12, "general": 4}
    assert all(r.region == T.GENERAL_REGION for r in records if r.source == "general")
    plain = tmp_path / "plain.jsonl"  # a chat file without the consensus columns
    plain.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
        )
        + "\n",
        encoding="utf-8",
    )
    (r,) = T.read_training_records(plain)
    assert (r.source, r.region, r.language) == ("(none)", "(none)", "(none)")


# ---------------------------------------------------------------------------------------------
# a run with a held-out split and TensorBoard


def test_heldout_loss_and_tensorboard_logs(
    tiny_chat: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "a"
    # LoRA dropout on: training draws from torch's random state, which evaluation must not move
    kw = dict(heldout_share=0.25, max_steps=5, lora_dropout=0.1)
    summary = T.run_job(make_job(tiny_chat, out, eval_steps=2, **kw))
    # round(0.25 * 16) = 4 wanted, but the fixture's strata are of one or two examples and each
    # keeps a training example: one of each pair (ES, KR, CN) is held out
    assert summary["examples_heldout"] == 3 and summary["examples_used"] == 13
    counts = pl.DataFrame(summary["data"])
    assert counts.filter(pl.col("heldout") > 0)["region"].sort().to_list() == ["CN", "ES", "KR"]
    assert (counts["examples"] == counts["train"] + counts["heldout"] + counts["dropped"]).all()
    assert (counts["train"] >= 1).all()
    losses = pl.read_parquet(out / "loss.parquet")
    assert losses["step"].to_list() == [1, 2, 3, 4, 5]
    held = losses.filter(pl.col("heldout_loss").is_not_null())
    assert held["step"].to_list() == [2, 4, 5]  # every eval_steps and the last step
    assert summary["final_heldout_loss"] == pytest.approx(held["heldout_loss"][-1])
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ  # set for the run only
    # TensorBoard event files under the run directory, named by the run's fingerprint
    tb = Path(summary["tracking"]["tensorboard_dir"])
    assert (
        tb.parent == out / "run" / "tensorboard" and summary["tracking"]["run_name"] == "test-full"
    )
    scalars = T.read_tensorboard_scalars(tb)
    train_curve = scalars.filter(pl.col("tag") == "train/loss").sort("step")
    assert train_curve["step"].to_list() == losses["step"].to_list()
    assert train_curve["value"].to_list() == pytest.approx(losses["loss"].to_list(), rel=1e-6)
    eval_curve = scalars.filter(pl.col("tag") == "eval/loss").sort("step")
    assert eval_curve["step"].to_list() == [2, 4, 5]
    assert eval_curve["value"].to_list() == pytest.approx(held["heldout_loss"].to_list(), rel=1e-6)
    # the training card replaces PEFT's stub in the adapter directory
    readme = (out / "adapter" / "README.md").read_text()
    assert "library_name: peft" in readme and "held-out loss" in readme
    assert "More Information Needed" not in readme

    # evaluating the held-out split leaves training as it was: same adapter with other
    # eval_steps, and without a tracker
    other = tmp_path / "b"
    T.run_job(make_job(tiny_chat, other, eval_steps=3, report_to=(), **kw))
    assert (other / "adapter" / "adapter_model.safetensors").read_bytes() == (
        out / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    assert not (other / "run" / "tensorboard").exists()


class CrashAfterLog(TrainerCallback):
    """Stands in for a kill after step `step` was logged but before its checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == self.step and logs and "loss" in logs:
            raise KeyboardInterrupt(f"killed after logging step {self.step}")


def test_resumed_run_continues_its_tensorboard_curve(
    tiny_chat: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "r"
    job = make_job(tiny_chat, out)
    with pytest.raises(KeyboardInterrupt):
        T.run_job(job, callbacks=[CrashAfterLog(5)])  # logged 1..5, checkpoint 3 complete
    with caplog.at_level("INFO", logger="polyculture.train"):
        summary = T.run_job(job)
    assert "resuming from" in caplog.text and "checkpoint-3 (step 3 of 6)" in caplog.text
    assert summary["resume"]["resumed_steps"] == 3 and summary["resume"]["trained_steps"] == 3
    losses = pl.read_parquet(out / "loss.parquet")
    scalars = T.read_tensorboard_scalars(summary["tracking"]["tensorboard_dir"])
    curve = scalars.filter(pl.col("tag") == "train/loss").sort("step")
    # steps 4 and 5 of the interrupted attempt are purged: each step once, the resumed values
    assert curve["step"].to_list() == [1, 2, 3, 4, 5, 6]
    assert curve["value"].to_list() == pytest.approx(losses["loss"].to_list(), rel=1e-6)
    assert len(list(Path(summary["tracking"]["tensorboard_dir"]).glob("events.out.*"))) == 2


def test_refused_checkpoints_name_the_reason(tmp_path: Path) -> None:
    job = make_job("unused-model", tmp_path / "x")
    ckpt = Path(job.run_dir) / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    fingerprint = {"settings": {"learning_rate": 0.01}, "data_sha256": "a" * 64, "world_size": 1}
    # checkpoints without a fingerprint file: which run wrote them is unknown
    plan = T.prepare_run_dir(job, fingerprint)
    assert plan.checkpoint is None and not ckpt.exists()
    assert plan.refused == [
        {
            "checkpoint": "checkpoint-2",
            "step": 2,
            "reason": "the run directory has no fingerprint.json (which run wrote it is unknown)",
        }
    ]
    # what differs between two fingerprints, digests shortened
    other = {"settings": {"learning_rate": 0.02}, "data_sha256": "b" * 64, "world_size": 2}
    assert T.fingerprint_differences(fingerprint, other) == [
        "data_sha256: aaaaaaaaaaaa… → bbbbbbbbbbbb…",
        "settings.learning_rate: 0.01 → 0.02",
        "world_size: 1 → 2",
    ]
    assert T.fingerprint_differences(fingerprint, fingerprint) == []
    # a checkpoint killed while its trainer_state.json (written last) was being written
    T.prepare_run_dir(job, fingerprint)  # now with this fingerprint
    for step, text in ((2, '{"global_step": 2}'), (4, ""), (6, '{"global_st')):
        (Path(job.run_dir) / f"checkpoint-{step}").mkdir()
        (Path(job.run_dir) / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    plan = T.prepare_run_dir(job, fingerprint)
    assert plan.checkpoint == Path(job.run_dir) / "checkpoint-2"
    assert [r["step"] for r in plan.refused] == [4, 6]
    assert all("incomplete" in r["reason"] for r in plan.refused)
    assert T.fingerprint_hash(fingerprint) != T.fingerprint_hash(other)
