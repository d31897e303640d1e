"""Training data: the dialogues' records, their validation, the stratified held-out split and
its counts."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyculture.errors import InputError
from polyculture.io import read_jsonl

IGNORE_INDEX = -100


ROLES = ("system", "user", "assistant")


DROP_STAGE = "train_tokenize"


NO_REGION = "(none)"


GENERAL_REGION = "(general)"


@dataclass
class TokenizedExample:
    """Model input of one conversation: token ids and labels (-100 outside assistant tokens)."""

    input_ids: list[int]
    labels: list[int]

    def as_features(self) -> dict[str, list[int]]:
        """The feature dict that the data collator pads."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": [1] * len(self.input_ids),
            "labels": self.labels,
        }


def validate_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Check one conversation: a list of {role, content} with roles system/user/assistant and
    at least one assistant turn; returns it with only role and content kept."""
    if not isinstance(messages, list) or not messages:
        raise InputError(where, "'messages' must be a non-empty list of {role, content} objects")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(where, f"messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise InputError(
                where, f"messages[{i}].role is {m['role']!r}, expected one of {', '.join(ROLES)}"
            )
        if not isinstance(m["content"], str):
            raise InputError(where, f"messages[{i}].content must be a string")
        clean.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in clean):
        raise InputError(where, "the conversation has no assistant turn (nothing to train on)")
    return clean


@dataclass(frozen=True)
class TrainRecord:
    """One training example: the conversation and the stratum it belongs to."""

    messages: list[dict[str, str]]
    region: str
    language: str
    source: str

    @property
    def stratum(self) -> tuple[str, str, str]:
        """(source, region, language): the held-out split keeps these shares."""
        return (self.source, self.region, self.language)


def read_training_records(path: str | os.PathLike[str]) -> list[TrainRecord]:
    """Read the training JSONL (one {"messages": [...]} object per line, with the optional
    `region`, `language` and `source` of the consensus data); errors name the line. A record
    without a region is '(general)' when its source is 'general', else '(none)'."""
    records = read_jsonl(path)
    if not records:
        raise InputError(path, "no training examples (the file has no JSON lines)")
    out = []
    for lineno, record in enumerate(records, start=1):
        if "messages" not in record:
            raise InputError(path, f"record {lineno} has no 'messages' key")
        messages = validate_messages(record["messages"], f"{path}: record {lineno}")
        source = str(record.get("source") or NO_REGION)
        region = record.get("region")
        if region is None:
            region = GENERAL_REGION if source == "general" else NO_REGION
        out.append(
            TrainRecord(
                messages=messages,
                region=str(region),
                language=str(record.get("language") or NO_REGION),
                source=source,
            )
        )
    return out


def read_conversations(path: str | os.PathLike[str]) -> list[list[dict[str, str]]]:
    """The conversations of the training JSONL (see :func:`read_training_records`)."""
    return [r.messages for r in read_training_records(path)]


def heldout_split(strata: Sequence[Any], share: float, seed: int) -> list[bool]:
    """Which examples are held out: `round(share * n)` of them, allocated to the strata in
    proportion to their sizes (largest remainders first, ties in a seeded random order) and
    drawn at random within each stratum. Every stratum keeps at least one training example,
    so a stratum of one is never held out (the held-out set may then be a little smaller).
    `share` 0 holds out nothing; the same strata, share and seed give the same split."""
    import numpy as np

    n = len(strata)
    held = [False] * n
    if share <= 0 or n < 2:
        return held
    rng = np.random.default_rng(seed)
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(strata):
        groups.setdefault(key, []).append(i)
    keys = sorted(groups, key=repr)
    target = min(max(1, math.floor(share * n + 0.5)), n - 1)
    quota = {k: share * len(groups[k]) for k in keys}
    cap = {k: len(groups[k]) - 1 for k in keys}
    take = {k: min(math.floor(quota[k]), cap[k]) for k in keys}
    tiebreak = {k: int(r) for k, r in zip(keys, rng.permutation(len(keys)), strict=True)}
    left = target - sum(take.values())
    while left > 0:
        open_keys = [k for k in keys if take[k] < cap[k]]
        if not open_keys:
            break
        k = max(open_keys, key=lambda k: (quota[k] - take[k], -tiebreak[k]))
        take[k] += 1
        left -= 1
    for k in keys:
        if take[k]:
            for i in rng.permutation(groups[k])[: take[k]]:
                held[int(i)] = True
    return held


def split_counts(
    records: Sequence[TrainRecord], held: Sequence[bool], kept: Sequence[bool]
) -> list[dict[str, Any]]:
    """Examples per source, region and language: in the file, used for training, used as
    held-out, and dropped (left without assistant tokens by truncation)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r, h, k in zip(records, held, kept, strict=True):
        row = rows.setdefault(
            r.stratum,
            {
                "source": r.source,
                "region": r.region,
                "language": r.language,
                "examples": 0,
                "train": 0,
                "heldout": 0,
                "dropped": 0,
            },
        )
        row["examples"] += 1
        if not k:
            row["dropped"] += 1
        elif h:
            row["heldout"] += 1
        else:
            row["train"] += 1
    return [rows[key] for key in sorted(rows)]
