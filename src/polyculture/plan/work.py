"""The work of a job, from the config and the inputs that exist: which model it runs, how many
requests, and their input and output tokens.

Per rule (the stages that run a model; the others do no model work):
- wvs_survey: the shard's prompts of every language (cut as the rule's script cuts them) x
  `wvs.samples_per_prompt` requests; the prompts
  are the language's prompt table where an earlier run wrote it, else the English prompts built
  here as wvs_build_prompts builds them (a translation is counted as long as its source).
- wvs_translate_prompts: one request per English prompt (none for English); output as long as
  the input.
- wvs_judge: one request per parsed item of the shard's responses: the parsed table where it
  exists, else every response split into 10 items (the survey's stop '11.' ends a response
  after item 10); the judge's real chat (polyculture.wvs.stances.judge_conversation).
- blend_generate: every prompt of the country's runs (BLEnD's questions x languages x
  templates) where the BLEnD data exists, for every eval model of the job's engine.
- benchmark_generate: a folder benchmark's items (its items table, where an earlier run built
  it), for every eval model of the job's engine.
- sample_responses: the shard's question pairs x 2 sides x `consensus.samples`, where an
  earlier run wrote the pairs (for the workflow's shard counts, which cannot wait for them:
  `questions.k` pairs per row of the sources' files, each question `questions.max_chars`
  long); embed_responses: the shard's responses (input only).
- write_paragraphs (one request per statement), generate_questions (per paragraph),
  translate_questions and translate_ground_truth (per row, for a model translator), critique
  (per ground-truth row; three calls in the CulFiT method): where their input tables exist.
- lm_eval and train_lora: not estimated (their work depends on the harness's tasks and on the
  training steps); their busy time is the start-up alone and the plan says so.
Output tokens are the sampling limit (`max_new_tokens`), or the measured mean of an earlier
run's outputs where they exist. A shard count `auto` is the count the workflow chose
(:func:`shard_count`). With `Context.config_only` nothing of an earlier run is read (the
English prompts, the sampling limits): the estimates of the workflow's shard counts, which must
be the same on every parse of the workflow, before and during a run. Where the inputs do not exist yet, the work is unknown and the
plan says so (its GPU-hours busy are then the engine start-up alone)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.backends.spec import parse_model_spec
from polyculture.errors import ConfigError
from polyculture.io import shard_bounds
from polyculture.plan.dag import Job
from polyculture.plan.tables import lookup_throughput, params_billions, throughput_rows
from polyculture.plan.tokens import CHARS_PER_TOKEN, TokenCounter

#: The WVS survey's stop ('11.') ends a response after its 10th numbered item.
ITEMS_PER_RESPONSE = 10


@dataclass(frozen=True)
class Work:
    """The model work of one job."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    measured_output: bool = False


@dataclass
class Context:
    """What the work estimates read: the config (defaults filled), the working directory and
    the token counter."""

    config: Mapping[str, Any]
    workdir: Path
    tokens: TokenCounter
    #: Read nothing an earlier run wrote (see the module doc).
    config_only: bool = False

    def path(self, rel: str) -> Path:
        """A path of the config relative to the working directory."""
        p = Path(rel)
        return p if p.is_absolute() else self.workdir / p


def eval_model_spec(config: Mapping[str, Any], name: str) -> str:
    """The model spec of eval model `name`."""
    for m in config.get("eval_models") or []:
        if m.get("name") == name:
            return str(m["model"])
    return name


def model_label(spec: str) -> str:
    """The name a price table and throughput lookup use: the API model id, else the spec."""
    parsed = parse_model_spec(spec)
    return str(parsed.api_model) if parsed.is_api else spec


def _read(path: Path, column: str) -> list[str] | None:
    """A text column of a Parquet file (or of every shard file matching `path`'s glob)."""
    files = sorted(path.parent.glob(path.name)) if "*" in path.name else [path]
    files = [f for f in files if f.is_file() and f.stat().st_size > 0]
    if not files:
        return None
    try:
        frames = [pl.read_parquet(f, columns=[column]) for f in files]
    except (pl.exceptions.PolarsError, OSError):
        return None
    return [str(v) for f in frames for v in f[column].drop_nulls().to_list()]


def _output(
    ctx: Context, spec: str, requests: int, limit: int, earlier: list[str] | None
) -> tuple[int, bool]:
    """Output tokens of `requests`: the measured mean of `earlier` outputs, else `limit` each."""
    if earlier:
        return round(requests * ctx.tokens.mean(spec, earlier)), True
    return requests * int(limit), False


@cache
def _wvs_english_prompts(topics: str, templates: str, keys: tuple[str, ...], n: int, seed: int):
    from polyculture.wvs.prompts import build_prompts
    from polyculture.wvs.topics import load_templates, load_topics, select_topics

    chosen = select_topics(load_topics(topics), list(keys))
    return build_prompts(chosen, load_templates(templates), n, seed)["prompt_en"].to_list()


def wvs_prompts(ctx: Context, language: str) -> list[str]:
    """The survey prompts of `language`: an earlier run's table, else the English ones."""
    wvs, results = ctx.config["wvs"], ctx.config["results"]
    path = ctx.path(f"{results}/wvs/prompts/{language}.parquet")
    earlier = None if ctx.config_only else _read(path, "prompt")
    if earlier:
        return earlier
    # the seed of wvs_build_prompts: rules/common.smk SEED_OFFSETS["wvs"]["prompts"]
    seed = int(ctx.config.get("seed", 0)) + 5200
    return list(
        _wvs_english_prompts(
            str(ctx.path(wvs["topics_path"])),
            str(ctx.path(wvs["templates_path"])),
            tuple(wvs.get("topics") or ()),
            int(wvs["n_prompts"]),
            seed,
        )
    )


def _shard(items: Sequence[Any], job: Job, n_shards: int) -> Sequence[Any]:
    """The job's shard of `items`, as the rule's script cuts it (polyculture.io.shard_bounds)."""
    start, stop = shard_bounds(len(items), int(job.wildcards.get("shard", 0)), n_shards)
    return items[start:stop]


def _shards(ctx: Context, key: str, model: str, job: Job) -> int:
    """The shard count of `key` for `model` that the job's workflow chose (gpu kind: the job's)."""
    return shard_count(ctx.config, ctx.workdir, key, model, job.resources.get("gpu_model") or None)


def _wvs_survey(job: Job, ctx: Context) -> Work:
    """One shard of every language's prompts (a job per model and shard)."""
    wvs, results = ctx.config["wvs"], ctx.config["results"]
    model = job.wildcards["model"]
    spec = eval_model_spec(ctx.config, model)
    shards = _shards(ctx, "wvs.shards", model, job)
    prompts = [p for lang in wvs["languages"] for p in _shard(wvs_prompts(ctx, lang), job, shards)]
    requests = len(prompts) * int(wvs["samples_per_prompt"])
    inputs = ctx.tokens.total(spec, prompts) * int(wvs["samples_per_prompt"])
    parsed = ctx.path(f"{results}/wvs/parsed/{model}.parquet")
    earlier = None if ctx.config_only else _read(parsed, "item_text")
    if earlier:  # a response is its items: their tokens over the responses parsed
        responses = len(set(_read(parsed, "response_id") or [])) or 1
        per = ctx.tokens.total(spec, earlier) / responses
        return Work(spec, requests, inputs, round(requests * per), True)
    limit = int(wvs["sampling"]["max_new_tokens"])
    return Work(spec, requests, inputs, requests * limit)


def _wvs_translate(job: Job, ctx: Context) -> Work | None:
    tr = ctx.config["translator"]
    if tr.get("kind") not in ("llm",) or not tr.get("model"):
        return None
    spec = str(tr["model"])
    if job.wildcards["language"] == "en":
        return Work(spec, 0, 0, 0)
    prompts = wvs_prompts(ctx, "en")
    tokens = ctx.tokens.total(spec, prompts)
    return Work(spec, len(prompts), tokens, min(tokens, len(prompts) * int(tr["max_new_tokens"])))


def _wvs_judge(job: Job, ctx: Context) -> Work:
    from polyculture.wvs.stances import judge_conversation, shard_responses
    from polyculture.wvs.topics import load_topics, select_topics

    wvs, results = ctx.config["wvs"], ctx.config["results"]
    spec = str(wvs["judge"])
    shards = _shards(ctx, "wvs.judge_shards", job.wildcards["model"], job)
    parsed = ctx.path(f"{results}/wvs/parsed/{job.wildcards['model']}.parquet")
    if not ctx.config_only and parsed.is_file() and parsed.stat().st_size:
        items = shard_responses(pl.read_parquet(parsed), int(job.wildcards["shard"]), shards)
        texts = [str(t) for t in items["item_text"].to_list()]
        requests = len(texts)
        item_tokens = ctx.tokens.total(spec, texts)
    else:
        responses = int(wvs["n_prompts"]) * int(wvs["samples_per_prompt"]) * len(wvs["languages"])
        requests = len(_shard(range(responses), job, shards)) * ITEMS_PER_RESPONSE
        item_tokens = requests * wvs["sampling"]["max_new_tokens"] / ITEMS_PER_RESPONSE
    topics = select_topics(load_topics(ctx.path(wvs["topics_path"])), wvs.get("topics") or None)
    chats = ["\n".join(turn["content"] for turn in judge_conversation(t, "")) for t in topics]
    inputs = requests * ctx.tokens.mean(spec, chats) + item_tokens
    limit = int(wvs["judge_sampling"]["max_new_tokens"])
    return Work(spec, requests, round(inputs), requests * limit)


def _blend_generate(job: Job, ctx: Context) -> Work | None:
    """Every country's prompts for every eval model the job's engine serves (base and adapters)."""
    from polyculture.backends.engine import engine_groups
    from polyculture.blend.data import questions_path
    from polyculture.blend.prompts import country_prompts, run_languages

    blend, results = ctx.config["evaluate"]["blend"], ctx.config["results"]
    data = ctx.path(blend.get("data_path") or f"{results}/evaluate/blend/data")
    members = engine_groups(ctx.config.get("eval_models") or [])[job.wildcards["blend_engine"]]
    spec = eval_model_spec(ctx.config, members[0])
    prompts: list[str] = []
    earlier: list[str] | None = []
    for country in blend["countries"]:
        if not questions_path(data, country).is_file():
            return None
        runs = [(lang, p) for lang in run_languages(country) for p in blend["prompts"]]
        asked = country_prompts(data, country, runs, blend.get("max_questions"))["prompt"]
        for name in members:
            prompts += asked.to_list()
            answers = ctx.path(f"{results}/evaluate/blend/{name}/answers/{country}.parquet")
            before = _read(answers, "response")
            earlier = None if earlier is None or before is None else earlier + before
    out, measured = _output(ctx, spec, len(prompts), blend["sampling"]["max_new_tokens"], earlier)
    return Work(spec, len(prompts), ctx.tokens.total(spec, prompts), out, measured)


def _benchmark_generate(job: Job, ctx: Context) -> Work | None:
    """A folder benchmark's items (its items table, where built) for every eval model the job's
    engine serves (base and adapters)."""
    from polyculture.backends.engine import engine_groups
    from polyculture.evals import benchmark_entries

    name = job.wildcards["benchmark"]
    entries = ctx.config["evaluate"].get("benchmarks") or []
    spec_of = {b.name: b for b in benchmark_entries(entries)}
    prompts = _table(ctx, f"evaluate/{name}/items.parquet", ["prompt"])
    if prompts is None or name not in spec_of:
        return None
    # an engine serves one base model: its group is the same among the benchmark's models
    members = engine_groups(ctx.config.get("eval_models") or [])[job.wildcards["bench_engine"]]
    spec = eval_model_spec(ctx.config, members[0])
    limit = spec_of[name].settings["generation"]["sampling"]["max_new_tokens"]
    earlier: list[str] | None = []
    for model in members:
        before = _table(ctx, f"evaluate/{name}/{model}/responses.parquet", ["response"])
        earlier = None if earlier is None or before is None else earlier + before[0]
    asked = prompts[0] * len(members)
    out, measured = _output(ctx, spec, len(asked), limit, earlier)
    return Work(spec, len(asked), ctx.tokens.total(spec, asked), out, measured)


def _sample_responses(job: Job, ctx: Context) -> Work | None:
    cons, results = ctx.config["consensus"], ctx.config["results"]
    spec = str(cons["generator"])
    n = int(cons["samples"])
    limit = cons["responses"]["sampling"]["max_new_tokens"]
    if ctx.config_only:  # one job's sampling of every pair (the shard count's estimate)
        requests = consensus_pairs_estimate(ctx) * 2 * n
        per = max(1, round(int(cons["questions"]["max_chars"]) / CHARS_PER_TOKEN))
        return Work(spec, requests, requests * per, requests * int(limit))
    pairs = _table(ctx, "consensus/question_pairs.parquet", ["question_en", "question_local"])
    if pairs is None:
        return None
    shards = _shards(ctx, "consensus.shards", spec, job)
    sides = [*_shard(pairs[0], job, shards), *_shard(pairs[1], job, shards)]
    requests = len(sides) * n
    inputs = ctx.tokens.total(spec, sides) * n
    earlier = _read(ctx.path(f"{results}/consensus/responses/shard-*.parquet"), "text")
    out, measured = _output(ctx, spec, requests, limit, earlier)
    return Work(spec, requests, inputs, out, measured)


def consensus_pairs_estimate(ctx: Context) -> int:
    """Question pairs of the consensus pipeline from its inputs alone: `questions.k` per row of
    each source's file (a JSONL line, a CSV row after the header; an upper bound, as the
    filters and the translation only drop)."""
    cons = ctx.config["consensus"]
    rows = 0
    for source in cons.get("sources") or []:
        path = ctx.path(str(source["path"]))
        if not path.is_file():
            continue
        with path.open("rb") as f:
            lines = sum(1 for line in f if line.strip())
        rows += lines - 1 if path.suffix.lower() in (".csv", ".tsv") else lines
    return max(0, rows) * int(cons["questions"]["k"])


def _table(ctx: Context, rel: str, columns: Sequence[str]) -> list[list[str]] | None:
    """Text columns of an earlier run's table under `results` (None: not there)."""
    path = ctx.path(f"{ctx.config['results']}/{rel}")
    cols = [_read(path, c) for c in columns]
    return None if any(c is None for c in cols) else cols  # type: ignore[misc]


def _rows_work(
    ctx: Context,
    spec: str,
    inputs: list[list[str]],
    calls_per_row: int,
    limit: int,
    earlier: list[list[str]] | None,
    share: float = 1.0,
) -> Work:
    """`calls_per_row` requests per input row, each with the row's texts as input (spread over
    the calls); output: the tokens of an earlier run's outputs of the same inputs (all their
    columns), else `limit` per request; `share` of it all (a shard's)."""
    rows = len(inputs[0])
    requests = math.ceil(rows * calls_per_row * share)
    in_tokens = sum(ctx.tokens.total(spec, col) for col in inputs) * share
    if earlier and earlier[0]:
        out = sum(ctx.tokens.total(spec, col) for col in earlier) * share
        return Work(spec, requests, round(in_tokens), round(out), True)
    return Work(spec, requests, round(in_tokens), requests * int(limit))


def _write_paragraphs(job: Job, ctx: Context) -> Work | None:
    cons = ctx.config["consensus"]
    statements = _table(ctx, "consensus/statements.parquet", ["text"])
    if statements is None:
        return None
    earlier = _table(ctx, "consensus/paragraphs.parquet", ["paragraph"])
    limit = cons["paragraphs"]["sampling"]["max_new_tokens"]
    return _rows_work(ctx, str(cons["generator"]), statements, 1, limit, earlier)


def _generate_questions(job: Job, ctx: Context) -> Work | None:
    cons = ctx.config["consensus"]
    paragraphs = _table(ctx, "consensus/paragraphs.parquet", ["statement", "paragraph"])
    if paragraphs is None:
        return None
    earlier = _table(ctx, "consensus/questions.parquet", ["question_en"])
    limit = cons["questions"]["sampling"]["max_new_tokens"]
    return _rows_work(ctx, str(cons["generator"]), paragraphs, 1, limit, earlier)


def _translator_spec(ctx: Context) -> str | None:
    tr = ctx.config["translator"]
    return str(tr["model"]) if tr.get("kind") in ("llm", "nllb") and tr.get("model") else None


def _translate_questions(job: Job, ctx: Context) -> Work | None:
    spec = _translator_spec(ctx)
    questions = _table(ctx, "consensus/questions.parquet", ["question_en"])
    if spec is None or questions is None:
        return None
    earlier = _table(ctx, "consensus/question_pairs.parquet", ["question_local"])
    limit = ctx.config["translator"]["max_new_tokens"]
    return _rows_work(ctx, spec, questions, 1, limit, earlier)


def _translate_ground_truth(job: Job, ctx: Context) -> Work | None:
    spec = _translator_spec(ctx)
    sel = job.wildcards.get("selection", "")
    gt = _table(ctx, f"consensus/selection/{sel}/ground_truth.parquet", ["gt_text"])
    if spec is None or gt is None:
        return None
    earlier = _table(ctx, f"consensus/selection/{sel}/ground_truth_translated.parquet", ["gt_weak"])
    limit = ctx.config["translator"]["max_new_tokens"]
    return _rows_work(ctx, spec, gt, 1, limit, earlier)


def _critique(job: Job, ctx: Context) -> Work | None:
    cons = ctx.config["consensus"]
    sel = job.wildcards.get("selection", "")
    columns = ["question_weak", "gt_text", "gt_weak"]
    rows = _table(ctx, f"consensus/selection/{sel}/ground_truth_translated.parquet", columns)
    if rows is None:
        return None
    calls = 3 if cons.get("critique_method") == "culfit" else 1
    out_cols = ["critique", "knowledge_points", "point_checks"][:calls]
    earlier = _table(ctx, f"consensus/selection/{sel}/critiques.parquet", out_cols)
    limit = cons["critique"]["sampling"]["max_new_tokens"]
    return _rows_work(ctx, str(cons["generator"]), rows, calls, limit, earlier)


def _embed_responses(job: Job, ctx: Context) -> Work | None:
    cons = ctx.config["consensus"]
    shard = job.wildcards.get("shard", "0")
    texts = _table(ctx, f"consensus/responses/shard-{shard}.parquet", ["text"])
    if texts is None:
        return None
    spec = str(cons["embedder"])
    return Work(spec, len(texts[0]), ctx.tokens.total(spec, texts[0]), 0)


#: The rules whose work the plan estimates.
ESTIMATORS: Mapping[str, Callable[[Job, Context], Work | None]] = {
    "wvs_survey": _wvs_survey,
    "wvs_survey_api": _wvs_survey,
    "wvs_translate_prompts": _wvs_translate,
    "wvs_judge": _wvs_judge,
    "blend_generate": _blend_generate,
    "benchmark_generate": _benchmark_generate,
    "sample_responses": _sample_responses,
    "write_paragraphs": _write_paragraphs,
    "generate_questions": _generate_questions,
    "translate_questions": _translate_questions,
    "translate_ground_truth": _translate_ground_truth,
    "critique": _critique,
    "embed_responses": _embed_responses,
}


def job_work(job: Job, ctx: Context) -> Work | None:
    """The job's model work, or None where the plan cannot tell (no estimator for its rule, or
    its inputs do not exist yet)."""
    estimate = ESTIMATORS.get(job.rule)
    return estimate(job, ctx) if estimate else None


def rules_without_estimate(jobs: Sequence[Job]) -> list[str]:
    """GPU rules whose work the plan does not estimate (busy = engine start-up only)."""
    return sorted({j.rule for j in jobs if j.gpus and j.rule not in ESTIMATORS})


def busy_hours(job: Job, work: Work | None, gpu_kind: str, ctx: Context) -> float:
    """GPU-hours a GPU job keeps its GPUs busy: start-up plus input and output tokens at the
    throughput row of its model's size (work unknown: start-up alone); 0 for a CPU job."""
    if not job.gpus:
        return 0.0
    rows = throughput_rows(ctx.config.get("plan") or {})
    size = params_billions(work.model if work else job.wildcards.get("model", ""))
    row = lookup_throughput(rows, gpu_kind, size)
    seconds = row.startup_s
    if work:
        seconds += work.input_tokens / row.input_tok_s + work.output_tokens / row.output_tok_s
    return seconds * job.gpus / 3600.0


# Shard counts that follow the work: `wvs.shards`, `wvs.judge_shards` and `consensus.shards`
# take `auto` besides a number. `auto` is one job per model and stage, split into
# ceil(hours / `cluster.job_hours`) shards where the plan's estimate of that one job's hours
# (engine start-up plus its tokens at the throughput of its model size and GPU kind,
# busy_hours) is longer than the target; at least one.
#
# The workflow computes the counts when it is parsed, before anything runs, and again in every
# cluster job's own parse: so the estimate reads the config and its input files alone, never an
# earlier run's tables (Context.config_only: the English prompts, the sampling limits, the
# consensus pairs estimated from its sources' files), and counts tokens by the character
# approximation (polyculture.plan.tokens.CHARS_PER_TOKEN: the same on every host, no tokenizer to
# load). A job that holds no GPU (an API model) and a run without a cluster site (no GPU kind, no
# runtime limit: the local profile) keep one job; so does `cluster.job_hours: null` (no target).

#: Shard keys → (the stage's rule, its wildcard of the model).
SHARD_KEYS: Mapping[str, tuple[str, str]] = {
    "wvs.shards": ("wvs_survey", "model"),
    "wvs.judge_shards": ("wvs_judge", "model"),
    "consensus.shards": ("sample_responses", "model"),
}


def _section_key(key: str) -> tuple[str, str]:
    section, name = key.split(".")
    return section, name


def stage_spec(config: Mapping[str, Any], key: str, model: str) -> str:
    """The model spec a job of the stage of `key` runs (`model`: an eval model's name for the
    WVS survey and judge, the generator's spec for consensus sampling)."""
    if key == "wvs.shards":
        return eval_model_spec(config, model)
    if key == "wvs.judge_shards":
        return str(config["wvs"]["judge"])
    return str(config["consensus"]["generator"])


def stage_hours(
    config: Mapping[str, Any], workdir: Path, key: str, model: str, gpu_kind: str
) -> float:
    """Estimated hours of ONE job doing the whole stage of `key` for `model` on one engine of
    GPU kind `gpu_kind` (start-up once, then every token), from the config and its inputs."""
    section, name = _section_key(key)
    single = {**config, section: {**config[section], name: 1}}
    ctx = Context(single, workdir, TokenCounter(approximate=True), config_only=True)
    rule, wildcard = SHARD_KEYS[key]
    job = Job(rule, 0, {wildcard: model, "shard": "0"}, resources={"gpu": "1"})
    return busy_hours(job, job_work(job, ctx), gpu_kind, ctx)


def shard_count(
    config: Mapping[str, Any], workdir: Path, key: str, model: str, gpu_kind: str | None
) -> int:
    """The shards of `key` (a dotted key of SHARD_KEYS) for `model`: the config's number as it
    is; for `auto`, ceil(stage_hours / cluster.job_hours), at least 1, and 1 where the job
    holds no GPU (an API model), where there is no GPU kind (no cluster site) or no target."""
    section, name = _section_key(key)
    value = config[section][name]
    if value != "auto":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, f"expected a whole number >= 1 or 'auto', got {value!r}")
        return value
    target = (config.get("cluster") or {}).get("job_hours")
    if not target or not gpu_kind or parse_model_spec(stage_spec(config, key, model)).is_api:
        return 1
    hours = stage_hours(config, Path(workdir), key, model, gpu_kind)
    return max(1, math.ceil(hours / float(target)))
