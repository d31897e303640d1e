"""Pushing a release directory (polyculture.release.push_release): to a local directory target
for real, and to the Hub through huggingface_hub's HfApi with the network calls replaced by a
recorder (no test talks to the Hub). The merge is tested on the demo's adapters in
tests/test_train_workflow.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from polyculture import release as R
from polyculture.errors import ConfigError, InputError


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    d = tmp_path / "release" / "full"
    d.mkdir(parents=True)
    (d / "README.md").write_text("---\nlibrary_name: peft\n---\n\ncard\n")
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (d / "adapter_model.safetensors").write_bytes(b"\x00weights")
    return d


def test_push_to_a_local_directory_target(release_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "hub"
    receipt = R.push_release(release_dir, "demo-org/tiny-chat-full", local_dir=target)
    repo = target / "demo-org" / "tiny-chat-full"
    assert receipt["target"] == "local" and receipt["location"] == str(repo)
    assert sorted(p.name for p in repo.iterdir()) == sorted(receipt["files"])
    for name, digest in receipt["files"].items():
        assert hashlib.sha256((repo / name).read_bytes()).hexdigest() == digest
        assert (repo / name).read_bytes() == (release_dir / name).read_bytes()
    # a second push replaces the repository's files, leaving no temporary directory behind
    (release_dir / "README.md").write_text("---\nlibrary_name: peft\n---\n\nnew card\n")
    R.push_release(release_dir, "demo-org/tiny-chat-full", local_dir=target)
    assert (repo / "README.md").read_text().endswith("new card\n")
    assert [p.name for p in (target / "demo-org").iterdir()] == ["tiny-chat-full"]


def test_push_refuses_bad_repo_ids_and_incomplete_releases(
    release_dir: Path, tmp_path: Path
) -> None:
    for bad in ("no-owner", "a/b/c", "a/ b"):
        with pytest.raises(ConfigError, match="train.push_to_hub.repo_id"):
            R.push_release(release_dir, bad, local_dir=tmp_path)
    (release_dir / "README.md").unlink()
    with pytest.raises(InputError, match="not a release directory"):
        R.push_release(release_dir, "a/b", local_dir=tmp_path)


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records the calls, talks to no server."""

    calls: list = []

    def __init__(self, *args, **kwargs) -> None:
        RecordingApi.calls.append(("init", args, kwargs))

    def create_repo(self, repo_id, **kwargs):
        RecordingApi.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        RecordingApi.calls.append(("upload_folder", kwargs))
        return SimpleNamespace(
            oid="0123abc", repo_url="https://hub.example/org/x", commit_url="https://c"
        )


def test_push_to_the_hub_takes_the_token_from_the_environment(
    release_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_fromTheEnvironment")
    receipt = R.push_release(release_dir, "org/x", private=True)
    assert receipt["target"] == "hub" and receipt["commit"] == "0123abc"
    init, create, upload = RecordingApi.calls
    assert init == ("init", (), {})  # no token passed: HfApi reads HF_TOKEN itself
    assert create == (
        "create_repo",
        "org/x",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    assert upload[1]["folder_path"] == str(release_dir) and upload[1]["repo_id"] == "org/x"
    assert "hf_fromTheEnvironment" not in json.dumps(receipt)
    # without a token the push fails before any call
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        R.push_release(release_dir, "org/x")
    assert RecordingApi.calls == []
