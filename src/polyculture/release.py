"""Handing a trained adapter on: merged into its base model for serving, and uploaded.

- :func:`merge_adapter` writes the base model with the LoRA weights folded in (safetensors), its
  tokenizer with the chat template and its generation config: a plain transformers model
  directory that vLLM (``vllm serve DIR``) or any OpenAI-compatible server loads without PEFT.
- :func:`push_release` uploads a release directory (adapter + model card) to a Hugging Face Hub
  model repository (token from the environment: ``HF_TOKEN``, or the login that ``hf auth
  login`` stored; never from the config), or writes the same files into a local directory
  target (``local_dir``, for tests and offline mirrors). It returns a receipt: the repository,
  the target, the commit, and the SHA-256 of every uploaded file.

Both write atomically (a temporary sibling, then a rename), so an interrupted job leaves
nothing half written.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from polyculture.errors import ConfigError, InputError
from polyculture.io import atomic_dir, file_sha256

log = logging.getLogger("polyculture.release")

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


def merge_adapter(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: Dtype = "auto",
) -> dict[str, Any]:
    """Fold the LoRA adapter into its base model and save model, tokenizer (with the chat
    template) and generation config to `out_dir`; returns what was written."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise InputError(adapter, "not a PEFT adapter directory (no adapter_config.json)")
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            base_model, "the base model's tokenizer has no chat template to serve with"
        )
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = sorted(p.name for p in tmp.iterdir())
    log.info("merged %s into %s: %s", adapter, out_dir, ", ".join(files))
    return {"base_model": base_model, "adapter": str(adapter), "files": files}


def file_digests(folder: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path."""
    root = Path(folder)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = file_sha256(p)
    return out


def check_repo_id(repo_id: str) -> None:
    """A Hub model repository id: owner/name."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(" " in p for p in parts):
        raise ConfigError(
            "train.push_to_hub.repo_id", f"'{repo_id}' is not a repository id (owner/name)"
        )


def push_release(
    release_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = True,
    local_dir: str | os.PathLike[str] | None = None,
    commit_message: str = "Upload LoRA adapter and model card (polyculture)",
) -> dict[str, Any]:
    """Upload a release directory to the Hub model repository `repo_id` (created if needed), or
    copy it to `local_dir`/`repo_id` when a local target is given; returns the receipt."""
    src = Path(release_dir)
    check_repo_id(repo_id)
    if not (src / "README.md").is_file() or not (src / "adapter_config.json").is_file():
        raise InputError(src, "not a release directory (needs README.md and adapter_config.json)")
    files = file_digests(src)
    if local_dir is not None:
        target = Path(local_dir) / repo_id
        with atomic_dir(target) as tmp:
            for name in files:
                shutil.copy2(src / name, tmp / name)
        log.info("pushed %s to the local target %s", src, target)
        return {
            "repo_id": repo_id,
            "target": "local",
            "location": str(target),
            "commit": None,
            "files": files,
        }
    from huggingface_hub import HfApi, get_token

    if not get_token():
        raise ConfigError(
            "train.push_to_hub",
            "no Hugging Face token: set HF_TOKEN in the environment (or run `hf auth login`)",
        )
    api = HfApi()  # reads the token from the environment or the stored login
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(src), commit_message=commit_message
    )
    log.info("pushed %s to %s (%s)", src, repo_id, getattr(info, "commit_url", ""))
    return {
        "repo_id": repo_id,
        "target": "hub",
        "location": getattr(info, "repo_url", None) and str(info.repo_url),
        "commit": getattr(info, "oid", None),
        "files": files,
    }
