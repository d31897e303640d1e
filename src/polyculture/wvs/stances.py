"""Stance judging of survey summaries and the polarity of each response (stage 6).

A judge model (any model spec, config ``wvs.judge``) reads one summary at a time together with
its topic's pro and con statements and answers, under JSON-schema constrained decoding,
``{"stance": "pro" | "con" | "null"}`` ("null": neither, mixed, unclear or off topic).
That is judge mode ``generate`` (config ``wvs.judge_mode``), the method's judge.

Judge mode ``logprob`` serves small models, which answer a zero-shot instruction with the same
label for everything (SmolLM2-135M, Gemma-3-270M and Qwen2.5-0.5B all said "pro" to every
probe sentence in the measurements behind issue 13; tests/test_real_models.py repeats the check
on SmolLM2): a few-shot prompt (:data:`FEW_SHOT`, two
clearly pro and two clearly con examples on topics outside the WVS list) ends in "Answer:", and
each label's log-probability as the reply ("PRO" / "CON") is computed; each label's mean score
over the judged batch (one judge job's summaries) is subtracted (calibration against the
model's prior for a label, as in contextual calibration), and the higher calibrated score wins.
This mode labels every summary pro or con (never null) and never fails to answer, so it has no
``judge_invalid`` drops; it needs the hf backend.
:func:`parse_judgement` accepts exactly that object (the label case-insensitively); anything
else, including the backend's None for unparsable output, is an invalid judgement: the summary
is dropped and counted (reason ``judge_invalid``).

:func:`score_responses` aggregates the labels of each response: n_pro, n_con, n_null,
n_invalid and pro_score = n_pro / (n_pro + n_con). A response without any pro or con label is
dropped and counted (reason ``no_stance``, or ``all_judgements_invalid`` when no summary got a
valid label).

Tables:

- ``{RESULTS}/wvs/judged/{model}/shard{shard}.parquet`` (rule ``wvs_judge``): the parsed
  summaries of the shard plus ``stance`` ('pro' | 'con' | 'null', null where invalid).
  Shards split a model's responses (all summaries of a response stay in one shard).
- ``{RESULTS}/wvs/scored/{model}.parquet`` (rule ``wvs_score``; read by the alignment stages):
  one row per kept response: model, family, language, prompt_id, template_id,
  topic_variant_id, question_key, response_id, sample, n_items, n_pro, n_con, n_null,
  n_invalid, pro_score.
- ``{RESULTS}/wvs/drops/judge/{model}.parquet``: stage 'judge' (unit: summaries, reason
  judge_invalid) and stage 'score' (unit: responses, reasons no_stance /
  all_judgements_invalid), with group "{model}/{language}", model and language columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from polyculture.drops import DropCounter
from polyculture.errors import InputError
from polyculture.wvs.surveys import RESPONSE_KEY_SCHEMA
from polyculture.wvs.topics import Topic

STANCES = ("pro", "con", "null")
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"stance": {"type": "string", "enum": list(STANCES)}},
    "required": ["stance"],
    "additionalProperties": False,
}
JUDGE_SYSTEM = (
    "You classify opinions. You receive a survey topic, a PRO statement, a CON statement and "
    "the summary of one interview, which may be written in any language. Decide whose side the "
    "interviewed person takes: 'pro' if they agree with the PRO statement, 'con' if they agree "
    "with the CON statement, 'null' if they take neither side, are undecided or mixed, or the "
    'summary is off topic. Reply with JSON only: {"stance": "pro"}, {"stance": "con"} or '
    '{"stance": "null"}.'
)
JUDGE_MODES = ("generate", "logprob")
#: Few-shot examples of the logprob judge: (topic, pro, con, summary, label); topics chosen to
#: lie outside the WVS question list so that no example leaks a test topic's answer.
FEW_SHOT: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "Public libraries",
        "Cities should fund public libraries.",
        "Cities should not fund public libraries.",
        "He says the library is the best thing his taxes pay for and wants more of them.",
        "pro",
    ),
    (
        "Daylight saving time",
        "Clocks should change for summer time.",
        "Clocks should not change for summer time.",
        "She thinks changing the clocks twice a year is pointless and wants it abolished.",
        "con",
    ),
    (
        "Cycling lanes",
        "Streets need more cycling lanes.",
        "Streets do not need more cycling lanes.",
        "He rides to work every day and says every street should have a safe bike lane.",
        "pro",
    ),
    (
        "Homework",
        "Schools should give daily homework.",
        "Schools should not give daily homework.",
        "She says homework only makes children tired and schools should stop giving it.",
        "con",
    ),
)
LOGPROB_LABELS = {"pro": "PRO", "con": "CON"}
LOGPROB_INSTRUCTION = (
    "Decide whether each interview summary agrees with the PRO statement or with the CON "
    "statement. Answer PRO or CON."
)
ITEM_KEYS = (*RESPONSE_KEY_SCHEMA, "n_items")
SCORED_SCHEMA = {
    **RESPONSE_KEY_SCHEMA,
    "n_items": pl.Int64,
    "n_pro": pl.Int64,
    "n_con": pl.Int64,
    "n_null": pl.Int64,
    "n_invalid": pl.Int64,
    "pro_score": pl.Float64,
}


def judge_conversation(topic: Topic, summary: str) -> list[dict[str, str]]:
    """The judge's chat for one summary of a response about `topic`."""
    user = (
        f"Topic: {topic.label}\n"
        f"PRO statement: {topic.pro}\n"
        f"CON statement: {topic.con}\n"
        f"Interview summary: {summary}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _case(label: str, pro: str, con: str, summary: str) -> str:
    return (
        f"Topic: {label}\nPRO statement: {pro}\nCON statement: {con}\nSummary: {summary}\nAnswer:"
    )


def few_shot_conversation(topic: Topic, summary: str) -> list[dict[str, str]]:
    """The logprob judge's chat for one summary: instruction, the few-shot cases with their
    answers, then this summary's case ending in 'Answer:' (one user turn, no system turn)."""
    shots = "\n\n".join(
        f"{_case(t, pro, con, text)} {LOGPROB_LABELS[lab]}" for t, pro, con, text, lab in FEW_SHOT
    )
    case = _case(topic.label, topic.pro, topic.con, summary)
    return [{"role": "user", "content": f"{LOGPROB_INSTRUCTION}\n\n{shots}\n\n{case}"}]


def calibrated_labels(scores: list[list[float]], labels: list[str]) -> list[str]:
    """The label with the highest score after subtracting each label's mean over the batch."""
    import numpy as np

    if not scores:
        return []
    arr = np.asarray(scores, dtype=float)
    calibrated = arr - arr.mean(axis=0, keepdims=True)
    return [labels[int(i)] for i in calibrated.argmax(axis=1)]


def parse_judgement(obj: object) -> str | None:
    """The stance of a judge reply ('pro' | 'con' | 'null'), or None when the reply is invalid."""
    if not isinstance(obj, Mapping) or set(obj) != {"stance"}:
        return None
    value = obj["stance"]
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if value in STANCES else None


def shard_responses(items: pl.DataFrame, shard: int, n_shards: int) -> pl.DataFrame:
    """The summaries of shard `shard`: contiguous blocks of the sorted response ids."""
    from polyculture.io import shard_bounds

    ids = sorted(items["response_id"].unique().to_list())
    start, stop = shard_bounds(len(ids), shard, n_shards)
    chosen = set(ids[start:stop])
    return items.filter(pl.col("response_id").is_in(list(chosen))).sort("response_id", "item_index")


def judge_items(
    generator: Any,
    items: pl.DataFrame,
    topics: Mapping[str, Topic],
    sampling: Any,
    mode: str = "generate",
) -> pl.DataFrame:
    """Label every summary with the judge; ``stance`` is null where the judgement is invalid.
    `mode` 'generate': constrained JSON; 'logprob': calibrated few-shot label scores."""
    if mode not in JUDGE_MODES:
        from polyculture.errors import ConfigError

        raise ConfigError(
            "wvs.judge_mode", f"expected one of {', '.join(JUDGE_MODES)}, got {mode!r}"
        )
    unknown = sorted(set(items["question_key"].unique().to_list()) - set(topics))
    if unknown:
        raise InputError(
            "parsed summaries",
            f"unknown topic code(s) {', '.join(unknown)}; not in the topic table",
        )
    build = judge_conversation if mode == "generate" else few_shot_conversation
    conversations = [
        build(topics[key], text)
        for key, text in zip(
            items["question_key"].to_list(), items["item_text"].to_list(), strict=True
        )
    ]
    if mode == "logprob":
        labels = list(LOGPROB_LABELS)
        scores = (
            generator.score_continuations(conversations, [LOGPROB_LABELS[k] for k in labels])
            if conversations
            else []
        )
        stances_lp = calibrated_labels(scores, labels)
        return items.with_columns(pl.Series("stance", stances_lp, dtype=pl.String))
    replies = (
        generator.generate_json(conversations, JUDGE_SCHEMA, 1, sampling) if conversations else []
    )
    stances = [parse_judgement(r[0] if r else None) for r in replies]
    return items.with_columns(pl.Series("stance", stances, dtype=pl.String))


def score_responses(
    labels: pl.DataFrame,
) -> tuple[pl.DataFrame, dict[tuple[str, str], DropCounter], dict[tuple[str, str], DropCounter]]:
    """Per-response counts and pro_score; (scored, summary drop counters, response drop counters)."""
    needed = {*ITEM_KEYS, "item_index", "stance"}
    missing = sorted(needed - set(labels.columns))
    if missing:
        raise InputError("judged summaries", f"missing column(s) {', '.join(missing)}")
    judge_drops: dict[tuple[str, str], DropCounter] = {}
    score_drops: dict[tuple[str, str], DropCounter] = {}
    counts = (
        labels.group_by(list(ITEM_KEYS), maintain_order=True)
        .agg(
            (pl.col("stance") == "pro").sum().alias("n_pro"),
            (pl.col("stance") == "con").sum().alias("n_con"),
            (pl.col("stance") == "null").sum().alias("n_null"),
            pl.col("stance").null_count().alias("n_invalid"),
        )
        .with_columns(pl.col(c).cast(pl.Int64) for c in ("n_pro", "n_con", "n_null", "n_invalid"))
        .sort("model", "language", "response_id")
    )
    keep: list[bool] = []
    for row in counts.iter_rows(named=True):
        group = (row["model"], row["language"])
        name = f"{group[0]}/{group[1]}"
        jd = judge_drops.setdefault(group, DropCounter("judge", name))
        sd = score_drops.setdefault(group, DropCounter("score", name))
        judged = row["n_pro"] + row["n_con"] + row["n_null"]
        jd.seen(judged + row["n_invalid"])
        if row["n_invalid"]:
            jd.drop("judge_invalid", row["n_invalid"])
        sd.seen()
        if row["n_pro"] + row["n_con"] > 0:
            keep.append(True)
        else:
            keep.append(False)
            sd.drop("all_judgements_invalid" if judged == 0 else "no_stance")
    scored = counts.filter(pl.Series(keep, dtype=pl.Boolean)).with_columns(
        (pl.col("n_pro") / (pl.col("n_pro") + pl.col("n_con"))).alias("pro_score")
    )
    return scored.select(list(SCORED_SCHEMA)).cast(SCORED_SCHEMA), judge_drops, score_drops
