"""Six-turn training dialogues (paper appendix B), region filter, and mixing with general data.

A cultural example is the chat `messages` list

    1 user       q^{λ-}     the question in the weaker language
    2 assistant  m_k        a sampled weak-language answer
    3 user       the critique request (project wording, per language)
    4 assistant  c_k        M's critique of m_k
    5 user       the refine request (project wording, per language)
    6 assistant  ĝ^{λ-}    the ground truth in the weaker language

Loss is computed on the assistant turns only (the trainer's job; the chat template's
assistant mask covers turns 2, 4 and 6). General instruction data (Aya format: inputs,
targets, language_code) becomes 2-turn dialogues, mixed in at `cultural_per_general : 1`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from polyculture.consensus.countries import is_blend_country
from polyculture.drops import DropCounter
from polyculture.errors import ConfigError, InputError
from polyculture.languages import BLEND_REGIONS, is_language_code

ROLES_SIX = ("user", "assistant", "user", "assistant", "user", "assistant")
REQUEST_KINDS = ("critique", "refine")
AYA_COLUMNS = ("inputs", "targets", "language_code")
# BLEnD's 13 languages (paper §4.1: English, Chinese, Spanish, Indonesian, Korean, Greek, Persian,
# Arabic, Azerbaijani, Sundanese, Assamese, Hausa, Amharic)
BLEND_LANGUAGES = frozenset(BLEND_REGIONS.values())

# ISO 639-3 / 639-2 codes (as in the Aya dataset's language_code) → ISO 639-1
ISO639_3_TO_1: dict[str, str] = {
    "amh": "am",
    "ara": "ar",
    "arb": "ar",
    "ary": "ar",
    "arz": "ar",
    "apc": "ar",
    "ars": "ar",
    "asm": "as",
    "aze": "az",
    "azj": "az",
    "azb": "az",
    "bel": "be",
    "ben": "bn",
    "bul": "bg",
    "cat": "ca",
    "ces": "cs",
    "cze": "cs",
    "cym": "cy",
    "dan": "da",
    "deu": "de",
    "ger": "de",
    "ell": "el",
    "gre": "el",
    "eng": "en",
    "epo": "eo",
    "est": "et",
    "eus": "eu",
    "fas": "fa",
    "per": "fa",
    "pes": "fa",
    "fin": "fi",
    "fil": "tl",
    "tgl": "tl",
    "fra": "fr",
    "fre": "fr",
    "gle": "ga",
    "glg": "gl",
    "guj": "gu",
    "hau": "ha",
    "heb": "he",
    "hin": "hi",
    "hrv": "hr",
    "hun": "hu",
    "hye": "hy",
    "arm": "hy",
    "ibo": "ig",
    "ind": "id",
    "isl": "is",
    "ita": "it",
    "jav": "jv",
    "jpn": "ja",
    "kan": "kn",
    "kat": "ka",
    "kaz": "kk",
    "khm": "km",
    "kir": "ky",
    "kor": "ko",
    "kur": "ku",
    "lao": "lo",
    "lav": "lv",
    "lit": "lt",
    "mal": "ml",
    "mar": "mr",
    "mkd": "mk",
    "mlg": "mg",
    "plt": "mg",
    "mlt": "mt",
    "mon": "mn",
    "mri": "mi",
    "msa": "ms",
    "may": "ms",
    "zsm": "ms",
    "mya": "my",
    "nep": "ne",
    "npi": "ne",
    "nld": "nl",
    "dut": "nl",
    "nor": "no",
    "nob": "nb",
    "nno": "nn",
    "nya": "ny",
    "ori": "or",
    "ory": "or",
    "pan": "pa",
    "pol": "pl",
    "por": "pt",
    "pus": "ps",
    "pbt": "ps",
    "ron": "ro",
    "rum": "ro",
    "rus": "ru",
    "sin": "si",
    "slk": "sk",
    "slo": "sk",
    "slv": "sl",
    "sna": "sn",
    "snd": "sd",
    "som": "so",
    "sot": "st",
    "spa": "es",
    "sqi": "sq",
    "alb": "sq",
    "srp": "sr",
    "sun": "su",
    "swa": "sw",
    "swh": "sw",
    "swe": "sv",
    "tam": "ta",
    "tel": "te",
    "tgk": "tg",
    "tha": "th",
    "tur": "tr",
    "twi": "tw",
    "ukr": "uk",
    "urd": "ur",
    "uzb": "uz",
    "uzn": "uz",
    "vie": "vi",
    "wol": "wo",
    "xho": "xh",
    "yid": "yi",
    "ydd": "yi",
    "yor": "yo",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "yue": "zh",
    "zul": "zu",
    "kin": "rw",
    "lug": "lg",
    "orm": "om",
    "gaz": "om",
    "tir": "ti",
    "tat": "tt",
    "tuk": "tk",
    "uig": "ug",
    "bak": "ba",
    "bod": "bo",
    "tib": "bo",
    "div": "dv",
    "fao": "fo",
    "fry": "fy",
    "gla": "gd",
    "hat": "ht",
    "ltz": "lb",
    "oci": "oc",
    "que": "qu",
    "san": "sa",
    "smo": "sm",
    "srd": "sc",
    "ssw": "ss",
    "tsn": "tn",
    "tso": "ts",
    "ven": "ve",
}


def normalize_language_code(code: str) -> str:
    """An ISO 639-1 code for a 2- or 3-letter code where one exists ('arb' → 'ar'); other
    codes are returned lower-cased as they are."""
    c = code.strip().lower().replace("-", "_").split("_")[0]
    if len(c) == 2:
        return c
    return ISO639_3_TO_1.get(c, c)


def check_requests(requests: Mapping[str, Mapping[str, str]]) -> None:
    """Both request kinds exist, each with an English wording, every key an ISO 639-1 code."""
    for kind in REQUEST_KINDS:
        wordings = requests.get(kind)
        if not isinstance(wordings, Mapping) or not str(wordings.get("en", "")).strip():
            raise ConfigError(f"consensus.requests.{kind}.en", "an English wording is required")
        for lang, text in wordings.items():
            if not is_language_code(lang):
                raise ConfigError(
                    f"consensus.requests.{kind}.{lang}", "key is not an ISO 639-1 code"
                )
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"consensus.requests.{kind}.{lang}", "wording is empty")


def missing_request_languages(
    requests: Mapping[str, Mapping[str, str]], languages: Sequence[str]
) -> list[tuple[str, str]]:
    """(kind, language) pairs that have no configured wording, sorted."""
    return sorted(
        (kind, lang)
        for kind in REQUEST_KINDS
        for lang in set(languages)
        if lang not in requests[kind]
    )


def request_table(
    requests: Mapping[str, Mapping[str, str]],
    translated: Mapping[tuple[str, str], str],
) -> pl.DataFrame:
    """(kind, language, text, origin) of every request wording: configured ones ('config') and
    those translated from the English wording ('translated')."""
    rows = [
        {"kind": kind, "language": lang, "text": text.strip(), "origin": "config"}
        for kind in REQUEST_KINDS
        for lang, text in sorted(requests[kind].items())
    ]
    rows += [
        {"kind": kind, "language": lang, "text": text.strip(), "origin": "translated"}
        for (kind, lang), text in sorted(translated.items())
    ]
    return pl.DataFrame(
        rows,
        schema={"kind": pl.String, "language": pl.String, "text": pl.String, "origin": pl.String},
    )


def request_lookup(table: pl.DataFrame) -> dict[tuple[str, str], str]:
    """(kind, language) → wording; a blank translated wording falls back to English."""
    out = {
        (k, lang): t
        for k, lang, t in table.select("kind", "language", "text").iter_rows()
        if t.strip()
    }
    for kind in REQUEST_KINDS:
        if (kind, "en") not in out:
            raise InputError("requests", f"no English wording of the {kind} request")
    return out


def wording(lookup: Mapping[tuple[str, str], str], kind: str, language: str) -> str:
    """The request wording of `kind` in `language`, else the English one."""
    return lookup.get((kind, language)) or lookup[(kind, "en")]


def six_turn_messages(
    question: str,
    answer: str,
    critique_request: str,
    critique: str,
    refine_request: str,
    ground_truth: str,
) -> list[dict[str, str]]:
    """The six-turn dialogue of appendix B."""
    contents = (question, answer, critique_request, critique, refine_request, ground_truth)
    return [{"role": r, "content": c} for r, c in zip(ROLES_SIX, contents, strict=True)]


def check_messages(messages: Sequence[Mapping[str, Any]], turns: int | None = None) -> None:
    """Roles alternate user/assistant starting with the user, end with the assistant, and no
    content is blank; `turns` fixes the length."""
    if turns is not None and len(messages) != turns:
        raise ValueError(f"expected {turns} turns, got {len(messages)}")
    if not messages or len(messages) % 2:
        raise ValueError("a training dialogue needs user/assistant pairs")
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.get("role") != expected:
            raise ValueError(f"turn {i + 1} has role {m.get('role')!r}, expected {expected!r}")
        if not str(m.get("content", "")).strip():
            raise ValueError(f"turn {i + 1} is empty")


def cultural_records(
    critiques: pl.DataFrame,
    lookup: Mapping[tuple[str, str], str],
    *,
    variant: str,
    region_filter: bool,
    language_filter: bool = False,
) -> tuple[list[dict[str, Any]], DropCounter]:
    """Six-turn records from the critique table; with `region_filter`, only questions whose
    country is one of the 16 BLEnD regions are kept (paper §3.2; others counted as
    'not_blend_region'); with `language_filter`, only instances in one of BLEnD's 13 languages
    (the instance's language: the weak language λ-; the filter of the paper's ablation, §5.2;
    others counted as 'not_blend_language')."""
    drops = DropCounter(stage="build_training_set", group=variant)
    drops.seen(critiques.height)
    records: list[dict[str, Any]] = []
    if critiques.height == 0:
        return records, drops
    cols = (
        "question_id",
        "country",
        "weak_language",
        "question_weak",
        "weak_answer",
        "critique",
        "gt_weak",
    )
    for qid, country, lang, question, answer, critique, gt in critiques.select(cols).iter_rows():
        if region_filter and not is_blend_country(country):
            drops.drop("not_blend_region")
            continue
        if language_filter and lang not in BLEND_LANGUAGES:
            drops.drop("not_blend_language")
            continue
        messages = six_turn_messages(
            question,
            answer,
            wording(lookup, "critique", lang),
            critique,
            wording(lookup, "refine", lang),
            gt,
        )
        try:
            check_messages(messages, turns=6)
        except ValueError:
            drops.drop("blank_turn")
            continue
        records.append(
            {
                "messages": messages,
                "variant": variant,
                "region": country,
                "language": lang,
                "question_id": qid,
                "source": "cultural",
            }
        )
    return records, drops


def general_pool(
    aya: pl.DataFrame, origin: str, languages: Sequence[str] | None
) -> tuple[list[dict[str, Any]], DropCounter]:
    """Usable general examples (2-turn records) from an Aya-format table, in file order;
    blank inputs/targets are dropped and counted; `languages` (ISO 639-1) filters if given."""
    missing = [c for c in AYA_COLUMNS if c not in aya.columns]
    if missing:
        raise InputError(
            origin, f"missing column(s) {missing}; expected Aya columns {list(AYA_COLUMNS)}"
        )
    drops = DropCounter(stage="general_examples")
    drops.seen(aya.height)
    keep_langs = set(languages) if languages else None
    pool = []
    for i, (inp, tgt, code) in enumerate(aya.select(*AYA_COLUMNS).iter_rows()):
        if not (isinstance(inp, str) and inp.strip() and isinstance(tgt, str) and tgt.strip()):
            drops.drop("blank_text")
            continue
        lang = normalize_language_code(code) if isinstance(code, str) and code.strip() else ""
        if not lang:
            drops.drop("no_language_code")
            continue
        if keep_langs is not None and lang not in keep_langs:
            drops.drop("language_not_kept")
            continue
        pool.append(
            {
                "messages": [
                    {"role": "user", "content": inp.strip()},
                    {"role": "assistant", "content": tgt.strip()},
                ],
                "variant": None,
                "region": None,
                "language": lang,
                "question_id": f"general-{i:06d}",
                "source": "general",
            }
        )
    return pool, drops


def general_count(n_cultural: int, cultural_per_general: float) -> int:
    """Number of general examples for `n_cultural` cultural ones at cultural:general = r:1
    (rounded half up)."""
    if cultural_per_general <= 0:
        raise ConfigError("consensus.general.cultural_per_general", "must be positive")
    return math.floor(n_cultural / cultural_per_general + 0.5)


def mix(
    cultural: list[dict[str, Any]],
    general: list[dict[str, Any]],
    *,
    cultural_per_general: float,
    variant: str,
    seed: int,
    origin: str,
) -> list[dict[str, Any]]:
    """Cultural records plus a seeded sample of general records at the configured ratio, in a
    seeded shuffled order. Fails when the general pool is too small for the ratio."""
    need = general_count(len(cultural), cultural_per_general)
    if need > len(general):
        raise InputError(
            origin,
            f"{len(cultural)} cultural examples need {need} general examples at "
            f"{cultural_per_general}:1, but only {len(general)} usable ones are available",
        )
    rng = np.random.default_rng([int(seed), 0])
    chosen = sorted(rng.choice(len(general), size=need, replace=False).tolist()) if need else []
    picked = [{**general[i], "variant": variant} for i in chosen]
    combined = cultural + picked
    order = np.random.default_rng([int(seed), 1]).permutation(len(combined))
    return [combined[i] for i in order]


def counts_table(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Examples per (source, region, language), the paper's Table 4 plus the general rows."""
    schema = {"source": pl.String, "region": pl.String, "language": pl.String, "count": pl.Int64}
    if not records:
        return pl.DataFrame(schema=schema)
    df = pl.DataFrame(
        [
            {"source": r["source"], "region": r["region"] or "(general)", "language": r["language"]}
            for r in records
        ],
        schema={k: v for k, v in schema.items() if k != "count"},
    )
    return (
        df.group_by("source", "region", "language")
        .len("count")
        .with_columns(pl.col("count").cast(pl.Int64))
        .sort(["source", "count", "region", "language"], descending=[False, True, False, False])
    )


def counts_markdown(counts: pl.DataFrame, variant: str) -> str:
    """Markdown: cultural examples per region (rows, by total) and language (columns) with the
    per-language totals (the paper's Table 4), then the general examples per language, then
    totals."""
    lines = [f"# Training examples, variant `{variant}`", ""]
    cultural = counts.filter(pl.col("source") == "cultural")
    if cultural.height:
        langs = sorted(set(cultural["language"].to_list()))
        by_region: dict[str, dict[str, int]] = {}
        for region, lang, n in cultural.select("region", "language", "count").iter_rows():
            by_region.setdefault(region, {})[lang] = n
        order = sorted(by_region, key=lambda r: (-sum(by_region[r].values()), r))
        lines.append("| region | " + " | ".join(langs) + " | total |")
        lines.append("|---" * (len(langs) + 2) + "|")
        for region in order:
            cells = [str(by_region[region].get(lang, 0)) for lang in langs]
            lines.append(
                f"| {region} | " + " | ".join(cells) + f" | {sum(by_region[region].values())} |"
            )
        per_lang = [sum(by_region[r].get(lang, 0) for r in order) for lang in langs]
        lines.append(
            "| **all regions** | " + " | ".join(str(n) for n in per_lang) + f" | {sum(per_lang)} |"
        )
    else:
        lines.append("No cultural examples.")
    general = counts.filter(pl.col("source") == "general")
    lines += ["", "| general language | count |", "|---|---|"]
    for lang, n in (
        general.group_by("language").agg(pl.col("count").sum()).sort("language").iter_rows()
    ):
        lines.append(f"| {lang} | {n} |")
    n_c, n_g = int(cultural["count"].sum()), int(general["count"].sum())
    lines += ["", f"cultural: {n_c}, general: {n_g}, total: {n_c + n_g}", ""]
    return "\n".join(lines)


def load_general(settings: Mapping[str, Any], schema: Any) -> tuple[pl.DataFrame, str]:
    """The general (Aya-format) table from `path` if given, else from the hub id `hub`."""
    from polyculture.io import check_columns, read_table

    if settings.get("path"):
        return read_table(settings["path"], schema), str(settings["path"])
    hub = settings.get("hub")
    if not hub:
        raise ConfigError("consensus.general", "give a path or a hub id of the general data")
    from polyculture.consensus.statements import load_hub

    df = load_hub(hub, settings.get("split", "train"), None)
    check_columns(df, schema, hub)
    return df, hub
