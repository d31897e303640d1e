"""Language codes (ISO 639-1) and the BLEnD regions with their languages."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from polyculture.errors import ConfigError


@cache
def iso639_1() -> dict[str, str]:
    """ISO 639-1 code → English language name (184 codes)."""
    text = files("polyculture").joinpath("data/iso639-1.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return {code: name for code, name in rows}


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code; fails naming the code when unknown."""
    try:
        return iso639_1()[code]
    except KeyError:
        raise ConfigError("language", f"'{code}' is not an ISO 639-1 language code") from None


def is_language_code(code: str) -> bool:
    """Whether `code` is an ISO 639-1 code."""
    return code in iso639_1()


# The 16 BLEnD countries/regions (names as in the BLEnD file names) and the language of their
# local-language questions; UK and US are asked in English only.
BLEND_REGIONS: dict[str, str] = {
    "Algeria": "ar",
    "Assam": "as",
    "Azerbaijan": "az",
    "China": "zh",
    "Ethiopia": "am",
    "Greece": "el",
    "Indonesia": "id",
    "Iran": "fa",
    "Mexico": "es",
    "North_Korea": "ko",
    "Northern_Nigeria": "ha",
    "South_Korea": "ko",
    "Spain": "es",
    "UK": "en",
    "US": "en",
    "West_Java": "su",
}


def normalize_region(name: str) -> str:
    """BLEnD file-name form of a region name ('South Korea' → 'South_Korea')."""
    return name.strip().replace(" ", "_")


def is_blend_region(name: str) -> bool:
    """Whether `name` (with spaces or underscores) is one of the 16 BLEnD regions."""
    return normalize_region(name) in BLEND_REGIONS
