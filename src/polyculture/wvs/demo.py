"""Seeded synthetic WVS/EVS microdata whose weighted polarity is known by construction.

:func:`make_demo_microdata` draws respondents for a few countries with the joint EVS/WVS
file's layout (``cntry_AN``, ``lnge_iso``, ``gwght``, ``pwght``, ``S020`` and one upper-case
column per topic). Each answer starts from a latent stance (pro or not, with a per-country
target share, or missing), which is then written as an answer code that the topic table
decodes back: pro answers get an affirmative code, the others a non-affirmative valid code
(neutral middles and volunteered codes included), missing answers a negative code, and a few
answers get an out-of-scale code (treated as missing). :func:`demo_truth` computes the
weighted polarity of the latent stances directly (plain Python sums, not the library's path),
so a test can check :mod:`polyculture.wvs.polarity` against it exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from polyculture.wvs.topics import Topic

# country → (main language, share and code of a second interview language, population weight)
DEMO_COUNTRIES: dict[str, tuple[str, float, str, float]] = {
    "US": ("en", 0.10, "es", 2.5),
    "GB": ("en", 0.0, "en", 1.2),
    "DK": ("da", 0.05, "en", 0.4),
    "NL": ("nl", 0.0, "nl", 0.8),
    "BR": ("pt", 0.0, "pt", 2.0),
    "PT": ("pt", 0.0, "pt", 0.6),
}
MISSING_CODES = (-1, -2, -4, -5)
OUT_OF_SCALE_CODE = 99


def topic_column(key: str) -> str:
    """The joint file's spelling of a topic's variable (upper case)."""
    return key.upper()


def make_demo_microdata(
    topics: Sequence[Topic],
    *,
    seed: int,
    respondents_per_country: int = 200,
    missing_rate: float = 0.06,
    out_of_scale_rate: float = 0.01,
    countries: Mapping[str, tuple[str, float, str, float]] = DEMO_COUNTRIES,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Synthetic microdata and its latent stances.

    Returns (microdata, latent): microdata has one row per respondent in the joint file's
    layout; latent has respondent, country, language, weight, question_key and stance
    (1 pro, 0 not pro, -1 missing or out of scale) for every answer cell.
    """
    rng = np.random.default_rng(seed)
    n_topics = len(topics)
    base = rng.uniform(0.1, 0.9, size=n_topics)
    rows: dict[str, list[object]] = defaultdict(list)
    latent: dict[str, list[object]] = defaultdict(list)
    respondent = 0
    for country, (lang, second_share, second_lang, pwght) in countries.items():
        target = np.clip(base + rng.normal(0.0, 0.18, size=n_topics), 0.03, 0.97)
        for _ in range(respondents_per_country):
            language = second_lang if rng.random() < second_share else lang
            gwght = float(rng.choice([0.5, 0.75, 1.0, 1.25, 1.5, 2.0]))
            rows["cntry_AN"].append(country)
            rows["lnge_iso"].append(language)
            rows["gwght"].append(gwght)
            rows["pwght"].append(pwght)
            rows["S020"].append(2018 + int(rng.integers(0, 4)))
            for j, t in enumerate(topics):
                u = rng.random()
                if u < missing_rate:
                    code, stance = int(rng.choice(MISSING_CODES)), -1
                elif u < missing_rate + out_of_scale_rate:
                    code, stance = OUT_OF_SCALE_CODE, -1
                elif rng.random() < target[j]:
                    code, stance = int(rng.choice(sorted(t.affirmative))), 1
                else:
                    code, stance = int(rng.choice(sorted(t.valid - t.affirmative))), 0
                rows[topic_column(t.key)].append(code)
                latent["respondent"].append(respondent)
                latent["country"].append(country)
                latent["language"].append(language)
                latent["weight"].append(gwght * pwght)
                latent["question_key"].append(t.key)
                latent["stance"].append(stance)
            respondent += 1
    return pl.DataFrame(rows), pl.DataFrame(latent)


def demo_truth(latent: pl.DataFrame) -> pl.DataFrame:
    """Weighted polarity of the latent stances per level × group × topic (plain Python sums).

    Columns: level, group, question_key, polarity, n_valid, weight_sum.
    """
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for row in latent.iter_rows(named=True):
        if row["stance"] < 0:
            continue
        for level, group in (
            ("country", row["country"]),
            ("language", row["language"]),
            ("global", "global"),
        ):
            cell = sums[(level, group, row["question_key"])]
            cell[0] += row["weight"] * row["stance"]
            cell[1] += row["weight"]
            cell[2] += 1
    out = [
        {
            "level": level,
            "group": group,
            "question_key": key,
            "polarity": pro / total,
            "n_valid": int(n),
            "weight_sum": total,
        }
        for (level, group, key), (pro, total, n) in sorted(sums.items())
    ]
    return pl.DataFrame(out)
