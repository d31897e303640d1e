"""How well a stance judge agrees with reference labels, and what the judging unit does to
polarity.

Reference labels: any table of (response_id, item_index, label) — e.g. the released judge
labels of the Rystrøm et al. study (``olmo-analysis-responses.jsonl``: one JSON object per
response, ``custom_id`` and the list ``opinions`` of 'pro' / 'con' / 'NULL', one per summary,
from one judge call per *response*), read by :func:`read_label_table`. Candidate labels: the
same shape, or the project's judged tables (``{RESULTS}/wvs/judged/...``: response_id,
item_index, stance; one judge call per *summary*).

:func:`label_agreement` gives the share of summaries with the same label, Cohen's κ, and per
label precision, recall and F1 of the candidate against the reference; :func:`polarity_effect`
compares the polarity (pro / (pro + con)) each labelling gives every response — the quantity the
alignment uses — so a user sees what a local judge, or judging per summary instead of per
response, changes downstream.
"""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl

from polyculture.errors import InputError
from polyculture.io import read_table

LABELS = ("pro", "con", "null")
LABEL_SCHEMA = {"response_id": pl.String, "item_index": pl.Int64, "label": pl.String}


def _norm_label(x: object) -> str | None:
    if x is None:
        return None
    s = str(x).strip().lower()
    return s if s in LABELS else None


def read_label_table(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Labels as (response_id, item_index, label) from the released per-response JSONL
    (custom_id, opinions: [...]) or from a table with response_id, item_index and label /
    stance columns. Labels are lower-cased; anything but pro / con / null fails naming the row."""
    p = str(path)
    if p.endswith(".jsonl"):
        rows = []
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(path, f"line {n}: not JSON ({exc.msg})") from exc
                if "custom_id" not in obj or not isinstance(obj.get("opinions"), list):
                    raise InputError(path, f"line {n}: expected 'custom_id' and a list 'opinions'")
                for i, lab in enumerate(obj["opinions"]):
                    norm = _norm_label(lab)
                    if norm is None:
                        raise InputError(path, f"line {n}: label {lab!r} is not pro, con or NULL")
                    rows.append((str(obj["custom_id"]), i, norm))
        return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")
    df = read_table(path)
    col = "label" if "label" in df.columns else "stance" if "stance" in df.columns else None
    if col is None or "response_id" not in df.columns or "item_index" not in df.columns:
        raise InputError(path, "expected columns response_id, item_index and label (or stance)")
    out = df.select(
        pl.col("response_id").cast(pl.String),
        pl.col("item_index").cast(pl.Int64),
        pl.col(col).map_elements(_norm_label, return_dtype=pl.String).alias("label"),
    )
    bad = out.with_row_index("_row").filter(pl.col("label").is_null() & df[col].is_not_null())
    if bad.height:
        raise InputError(
            path, f"row {bad['_row'][0]}: label {df[col][bad['_row'][0]]!r} is not pro, con or null"
        )
    return out.filter(pl.col("label").is_not_null())


def cohen_kappa(a: np.ndarray, b: np.ndarray, labels: tuple[str, ...] = LABELS) -> float:
    """Cohen's κ of two label vectors (NaN when chance agreement is 1)."""
    if a.size == 0:
        return float("nan")
    po = float((a == b).mean())
    pe = float(sum((a == lab).mean() * (b == lab).mean() for lab in labels))
    return float("nan") if pe >= 1 else (po - pe) / (1 - pe)


def label_agreement(reference: pl.DataFrame, candidate: pl.DataFrame) -> tuple[dict, pl.DataFrame]:
    """Agreement of `candidate` with `reference` over the summaries both label (matched on
    response_id and item_index): ({n_reference, n_candidate, n_matched, agreement, kappa},
    per-label table label, support_reference, support_candidate, precision, recall, f1)."""
    m = reference.join(candidate, on=["response_id", "item_index"], how="inner", suffix="_cand")
    a = m["label"].to_numpy().astype(str)
    b = m["label_cand"].to_numpy().astype(str)
    rows = []
    for lab in LABELS:
        tp = int(((a == lab) & (b == lab)).sum())
        ref_n = int((a == lab).sum())
        cand_n = int((b == lab).sum())
        prec = tp / cand_n if cand_n else float("nan")
        rec = tp / ref_n if ref_n else float("nan")
        f1 = (
            2 * prec * rec / (prec + rec) if cand_n and ref_n and (prec + rec) > 0 else float("nan")
        )
        rows.append(
            {
                "label": lab,
                "support_reference": ref_n,
                "support_candidate": cand_n,
                "precision": prec,
                "recall": rec,
                "f1": f1,
            }
        )
    summary = {
        "n_reference": reference.height,
        "n_candidate": candidate.height,
        "n_matched": m.height,
        "agreement": float((a == b).mean()) if m.height else float("nan"),
        "kappa": cohen_kappa(a, b),
    }
    return summary, pl.DataFrame(rows)


def response_polarity(labels: pl.DataFrame) -> pl.DataFrame:
    """Per response: n_pro, n_con, n_null and polarity = pro / (pro + con) (null without any)."""
    return (
        labels.group_by("response_id")
        .agg(
            (pl.col("label") == "pro").sum().alias("n_pro"),
            (pl.col("label") == "con").sum().alias("n_con"),
            (pl.col("label") == "null").sum().alias("n_null"),
        )
        .with_columns(
            pl.when(pl.col("n_pro") + pl.col("n_con") > 0)
            .then(pl.col("n_pro") / (pl.col("n_pro") + pl.col("n_con")))
            .alias("polarity")
        )
        .sort("response_id")
    )


def polarity_effect(reference: pl.DataFrame, candidate: pl.DataFrame) -> dict[str, float]:
    """What replacing the reference labelling by the candidate does to response polarity, over
    the responses both score: mean absolute difference, mean signed difference
    (candidate − reference), Pearson correlation, share of responses changed, and the share of
    responses the candidate leaves without a polarity (no pro or con) that the reference scores."""
    r = response_polarity(reference).select("response_id", pl.col("polarity").alias("ref"))
    c = response_polarity(candidate).select("response_id", pl.col("polarity").alias("cand"))
    both = r.join(c, on="response_id", how="left")
    scored = both.filter(pl.col("ref").is_not_null() & pl.col("cand").is_not_null())
    x = scored["ref"].to_numpy().astype(float)
    y = scored["cand"].to_numpy().astype(float)
    lost = both.filter(pl.col("ref").is_not_null() & pl.col("cand").is_null()).height
    n_ref = both.filter(pl.col("ref").is_not_null()).height
    corr = (
        float(np.corrcoef(x, y)[0, 1])
        if x.size > 2 and x.std() > 0 and y.std() > 0
        else float("nan")
    )
    return {
        "n_responses": int(x.size),
        "mean_abs_diff": float(np.abs(y - x).mean()) if x.size else float("nan"),
        "mean_diff": float((y - x).mean()) if x.size else float("nan"),
        "pearson": corr,
        "share_changed": float((np.abs(y - x) > 1e-12).mean()) if x.size else float("nan"),
        "share_lost": lost / n_ref if n_ref else float("nan"),
    }
