# Config validation and helpers shared by every rule file.
import functools
import os
import sys
from pathlib import Path

from polyculture.workflow import (
    OFFLINE_ENV,
    adapter_kind,
    check_budget,
    config_problems,
    config_warnings,
    engine_gpus,
    engine_options,
    format_problems,
    hub_items,
    item_slug,
    node_gpu_problems,
    announce_localrules,
    network_localrules,
    placed_groups,
    site_groups,
    parse_model_spec,
    placed_resources,
    placed_threads_of,
    shard_count,
    site_placement,
    usage_path_for,
)

# The config schema with its $ref'd sections, defaults set (snakemake.utils.validate would leave
# the sections' defaults unset and re-read a section file for every $ref on each parse, i.e. in
# every cluster job).
# Every problem is printed at once, without a traceback (the same check as `polyculture check`).
# Relative paths that name nothing in the working directory but exist in the workflow's own
# directory (its bundled resources) point there: the workflow runs from any directory.
_problems = config_problems(
    config,
    Path(workflow.basedir) / "schemas" / "config.schema.yaml",
    Path.cwd(),  # the working directory, against which relative paths resolve first
    basedir=Path(workflow.basedir),
)
if _problems:
    print(format_problems(_problems, "polyculture: config check"), file=sys.stderr)
    print(
        "(run `polyculture check --configfile ...` to check a config without Snakemake)",
        file=sys.stderr,
    )
    raise SystemExit(1)
if not workflow.remote_exec:  # once, on the submitting side, not in every cluster job
    for _warning in config_warnings(config, Path.cwd()):
        print(f"polyculture: config warning: {_warning}", file=sys.stderr)
    # The budgets of `plan` (polyculture.plan): the run's plan, through the command line's
    # profile, must stay within them unless --config plan_override=true.
    _over = check_budget(
        config,
        Path.cwd(),
        workflow.configfiles,
        sys.argv,
        basedir=Path(workflow.basedir),
    )
    if _over:
        print("polyculture: over budget, not starting:", file=sys.stderr)
        for _line in _over:
            print(f"  - {_line}", file=sys.stderr)
        raise SystemExit(1)

RESULTS = config["results"]
MODELS_DIR = f"{RESULTS}/models"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
#: Answers of finished engine calls (BLEnD per model x country, the WVS survey per language),
#: kept outside the declared outputs so that a killed or extended job generates only what it
#: lacks (polyculture.backends.answer_cache).
ANSWER_CACHE = f"{RESULTS}/answer_cache"
SEED = config["seed"]

#: Seed offset of every seeded stage, in one table: a stage's seed is the config's `seed` plus its
#: offset, so that stages draw independent streams and a changed seed changes them all. (The
#: evaluation's offsets are config keys, `evaluate.*.seed_offset`; shards add their index.)
SEED_OFFSETS = {
    "models": {"tiny-chat": 100, "tiny-embed": 200},
    "consensus": {
        "ingest": 3100,
        "paragraphs": 3200,
        "questions": 3300,
        "responses": 3400,
        "selection": 3500,
        "critique": 3600,
        "mix": 3700,
    },
    "wvs": {"consistency": 5100, "prompts": 5200, "survey": 5300, "judge": 5400},
    "alignment": {
        "alignment": 7100,
        "consistency": 7200,
        "mixed_model": 7300,
        "us_bias": 7400,
        "speccurve": 7500,
    },
}


def stage_seeds(group):
    """Stage → seed of one stage group, from SEED_OFFSETS."""
    return {stage: SEED + offset for stage, offset in SEED_OFFSETS[group].items()}


# Cluster jobs run offline: compute nodes often have no internet, and whatever a job would
# download is fetched before by the prefetch rules on the submit host (rules/prefetch.smk) into
# the Hugging Face cache that HF_HOME names. A job that still needs the network fails naming the
# missing item and the prefetch target (polyculture.logs). POLYCULTURE_ONLINE_JOBS=1 in the
# submitting environment keeps jobs online (a cluster whose nodes reach the hub).
if workflow.remote_exec and os.environ.get("POLYCULTURE_ONLINE_JOBS") != "1":
    os.environ.update(OFFLINE_ENV)

PREFETCH_DIR = f"{RESULTS}/prefetch"
#: (kind, slug) → what the prefetch rules fetch: every hub model, dataset and lm-eval task.
PREFETCH_ITEMS = {(item.kind, item_slug(item)): item for item in hub_items(config)}


def prefetched(kind, name):
    """Marker files of the prefetched items of `kind` named `name` (all of the kind for None)."""
    return [
        f"{PREFETCH_DIR}/{k}/{slug}.json"
        for (k, slug), item in PREFETCH_ITEMS.items()
        if k == kind and (name is None or item.name == name)
    ]


def table_schema(name):
    """Path of the row schema of table `name` (schemas/tables/<name>.schema.yaml), relative to
    the working directory.

    Params are provenance: a path into Snakemake's per-run source cache would change every run,
    and an absolute path would change when the project is moved or cloned elsewhere; either
    would rerun every rule that takes it."""
    path = (
        Path(workflow.basedir).resolve() / "schemas" / "tables" / f"{name}.schema.yaml"
    )
    return os.path.relpath(path, Path.cwd().resolve())


@functools.cache
def model_spec(spec):
    """The parsed model spec (polyculture.backends.spec.ModelSpec): kind, endpoint, placement,
    and its vLLM engine options from the config (polyculture.backends.engine); each spec string
    is parsed once per parse of the workflow."""
    return parse_model_spec(spec, engine=engine_options(config, spec))


def model_path(spec):
    """Loadable path or hub id of a model spec (built-in models live under MODELS_DIR)."""
    return model_spec(spec).path(MODELS_DIR)


def model_input(spec):
    """Input files of a model spec: the built model directory for built-ins, the prefetch marker
    for hub ids (the job then finds the model in the cache, offline), else none."""
    parsed = model_spec(spec)
    if parsed.kind == "builtin":
        return [f"{MODELS_DIR}/{parsed.name}"]
    if parsed.needs_prefetch:
        return prefetched("model", parsed.raw)
    return []


def model_gpus(spec):
    """GPUs a job running model `spec` asks for (ModelSpec.gpus: none for an API model, else
    its engine's tensor × pipeline parallel size), all on one node."""
    return model_spec(spec).gpus


def model_network(spec):
    """Whether a job running model `spec` needs the network (ModelSpec.needs_network: an API
    model)."""
    return model_spec(spec).needs_network


def translator_network():
    """Whether a translating job needs the network: kind google (an API), or an llm translator
    whose model is an API model."""
    tr = config["translator"]
    if tr.get("kind") == "google":
        return True
    return (
        tr.get("kind") == "llm" and bool(tr.get("model")) and model_network(tr["model"])
    )


def eval_model_network(name):
    """Whether a job running eval model `name` needs the network (an API model)."""
    return model_network(EVAL_MODELS[name]["model"])


def translator_gpus():
    """GPUs a translating job asks for: its model's for kinds llm and nllb; none for google
    (an API) and memory (a table lookup)."""
    tr = config["translator"]
    if tr.get("kind") in ("llm", "nllb") and tr.get("model"):
        return model_gpus(tr["model"])
    return 0


def eval_model_gpus(name):
    """GPUs a job running eval model `name` asks for: as model_gpus, with the eval model's own
    engine options (eval_models[].backend.vllm) over its base model's."""
    m = EVAL_MODELS[name]
    if model_spec(m["model"]).is_api:
        return 0
    return engine_gpus(engine_options(config, m["model"], m))


# Placement per job (polyculture.placement): the cluster profile's site settings, or None.
PLACEMENT = site_placement()


def placed(gpus, minutes=240, multi_gpu=False, network=False):
    """`resources:` of a job on `gpus` GPUs (a count or a function of the wildcards) that needs
    the network or not (a flag or a function of the wildcards), placed by the site settings
    (polyculture.placement.placed)."""
    return placed_resources(gpus, PLACEMENT, minutes, multi_gpu, network)


def stage_shards(key, model):
    """Shards of `key` (wvs.shards, wvs.judge_shards, consensus.shards) for `model`: the
    config's number, or for `auto` one job per model and stage, split where the plan estimates
    it longer than cluster.job_hours on the site's GPU kind (polyculture.plan.work.shard_count).
    """
    kind = PLACEMENT["gpu_model"] if PLACEMENT else None
    return shard_count(config, Path.cwd(), key, model, kind)


def placed_threads(gpus):
    """`threads:` of a job on `gpus` GPUs (polyculture.placement.placed_threads)."""
    return placed_threads_of(gpus, PLACEMENT)


def check_node_gpus():
    """Stop when a job would ask more GPUs than one node of the site has (site setting
    gpus_per_node), naming the config key."""
    if PLACEMENT and PLACEMENT.get("gpus_per_node"):
        problems = list(node_gpu_problems(config, int(PLACEMENT["gpus_per_node"])))
        if problems:
            print(
                format_problems(problems, "polyculture: placement check"),
                file=sys.stderr,
            )
            raise SystemExit(1)


check_node_gpus()


def adapter_dir(variant):
    """PEFT adapter directory that train_lora writes for a training variant."""
    return f"{RESULTS}/train/{variant}/adapter"


EVAL_MODELS = {m["name"]: m for m in config["eval_models"]}


def eval_adapter(name):
    """(kind, path or hub id) of eval model `name`'s adapter (polyculture.config_check.
    adapter_kind: a training variant's adapter directory, an outside adapter directory, a hub
    adapter id), or (None, None) without one."""
    adapter = EVAL_MODELS[name].get("adapter")
    if not adapter:
        return None, None
    kind = adapter_kind(adapter, config["train"]["variants"], Path.cwd())
    if kind == "variant":
        return kind, adapter_dir(adapter)
    if kind == "directory":
        return kind, str(Path(adapter).expanduser())
    return kind, adapter


def eval_model_input(name):
    """Files an evaluation of eval model `name` needs: its base model and its adapter, if any
    (a trained variant's adapter from train_lora, an outside directory as it is, a hub adapter
    through its prefetch marker)."""
    files = model_input(EVAL_MODELS[name]["model"])
    kind, adapter = eval_adapter(name)
    if kind == "hub":
        files += prefetched("adapter", adapter)
    elif adapter:
        files.append(adapter)
    return files


def eval_model_params(name):
    """Load settings of eval model `name`: base path, adapter path (or hub id) or None, merge
    flag."""
    m = EVAL_MODELS[name]
    return {
        "model": model_path(m["model"]),
        "adapter": eval_adapter(name)[1],
        "merge_adapter": m.get("merge_adapter", False),
    }


API_CACHE = config["backend"]["openai"].get("cache_dir") or f"{RESULTS}/api_cache"


def generation_params(spec=None, eval_model=None):
    """Backend settings shared by every generating rule, as a params function of the job: the
    openai backend's settings get the cache directory and the job's usage file (beside its first
    output), which only jobs of API models write; `engine` holds the vLLM engine options of the
    job's model (polyculture.backends.engine.engine_options). `spec` is the model spec the job
    runs and `eval_model` the eval model's name, each a value or a function of the wildcards.
    """

    def params(wildcards, output):
        backend = dict(config["backend"])
        name = eval_model(wildcards) if callable(eval_model) else eval_model
        entry = EVAL_MODELS[name] if name is not None else None
        raw = spec(wildcards) if callable(spec) else spec
        if raw is None and entry is not None:
            raw = entry["model"]
        backend["engine"] = engine_options(config, raw, entry)
        backend["openai"] = {
            **backend["openai"],
            "cache_dir": API_CACHE,
            "usage_path": usage_path_for(output[0]),
        }
        return backend

    return params


def enabled(group, targets):
    """Targets of a stage group, or none where `pipelines.<group>` switches it off."""
    return targets() if config["pipelines"][group] else []
