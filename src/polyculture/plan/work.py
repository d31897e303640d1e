"""The work of a job, from the config and the inputs that exist: which model it runs, how many
requests, and their input and output tokens.

Per rule (the stages that run a model; the others do no model work):
- wvs_survey: the shard's prompts (cut as the rule's script cuts them) x
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
  earlier run wrote the pairs; embed_responses: the shard's responses (input only).
- write_paragraphs (one request per statement), generate_questions (per paragraph),
  translate_questions and translate_ground_truth (per row, for a model translator), critique
  (per ground-truth row; three calls in the CulFiT method): where their input tables exist.
- lm_eval and train_lora: not estimated (their work depends on the harness's tasks and on the
  training steps); their busy time is the start-up alone and the plan says so.
Output tokens are the sampling limit (`max_new_tokens`), or the measured mean of an earlier
run's outputs where they exist. Where the inputs do not exist yet, the work is unknown and the
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
from polyculture.io import shard_bounds
from polyculture.plan.dag import Job
from polyculture.plan.tokens import TokenCounter

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
    earlier = _read(ctx.path(f"{results}/wvs/prompts/{language}.parquet"), "prompt")
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


def _wvs_survey(job: Job, ctx: Context) -> Work:
    wvs, results = ctx.config["wvs"], ctx.config["results"]
    spec = eval_model_spec(ctx.config, job.wildcards["model"])
    prompts = _shard(wvs_prompts(ctx, job.wildcards["language"]), job, int(wvs["shards"]))
    requests = len(prompts) * int(wvs["samples_per_prompt"])
    inputs = ctx.tokens.total(spec, prompts) * int(wvs["samples_per_prompt"])
    parsed = ctx.path(f"{results}/wvs/parsed/{job.wildcards['model']}.parquet")
    earlier = _read(parsed, "item_text")
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
    shards = int(wvs["judge_shards"])
    parsed = ctx.path(f"{results}/wvs/parsed/{job.wildcards['model']}.parquet")
    if parsed.is_file() and parsed.stat().st_size:
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
    pairs = _table(ctx, "consensus/question_pairs.parquet", ["question_en", "question_local"])
    if pairs is None:
        return None
    shards, n = int(cons["shards"]), int(cons["samples"])
    sides = [*_shard(pairs[0], job, shards), *_shard(pairs[1], job, shards)]
    requests = len(sides) * n
    inputs = ctx.tokens.total(spec, sides) * n
    earlier = _read(ctx.path(f"{results}/consensus/responses/shard-*.parquet"), "text")
    limit = cons["responses"]["sampling"]["max_new_tokens"]
    out, measured = _output(ctx, spec, requests, limit, earlier)
    return Work(spec, requests, inputs, out, measured)


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
