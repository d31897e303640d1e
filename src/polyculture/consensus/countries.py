"""Country names of the statement sources, mapped onto one canonical name per country.

Canonical names are the BLEnD region names (with spaces, e.g. 'South Korea', 'UK', 'US') for the
16 BLEnD regions and the common English short name for every other country, so that
`polyculture.languages.is_blend_region` recognises a BLEnD region by its canonical name.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from polyculture.languages import BLEND_REGIONS, normalize_region

# canonical name → other spellings used by CANDLE subjects and CultureAtlas countries
_ALIASES: dict[str, tuple[str, ...]] = {
    # the 16 BLEnD regions
    "Algeria": ("People's Democratic Republic of Algeria",),
    "Assam": (),
    "Azerbaijan": ("Republic of Azerbaijan",),
    "China": ("People's Republic of China", "PRC", "Mainland China"),
    "Ethiopia": ("Federal Democratic Republic of Ethiopia",),
    "Greece": ("Hellenic Republic",),
    "Indonesia": ("Republic of Indonesia",),
    "Iran": ("Islamic Republic of Iran", "Persia"),
    "Mexico": ("United Mexican States",),
    "North Korea": ("DPRK", "Democratic People's Republic of Korea"),
    "Northern Nigeria": ("North Nigeria",),
    "South Korea": ("Korea", "Republic of Korea", "ROK"),
    "Spain": ("Kingdom of Spain",),
    "UK": ("United Kingdom", "Great Britain", "Britain", "U.K.", "England", "Scotland", "Wales"),
    "US": ("United States", "United States of America", "USA", "U.S.", "U.S.A.", "America"),
    "West Java": ("Jawa Barat",),
    # every other country
    "Afghanistan": (),
    "Albania": (),
    "Andorra": (),
    "Angola": (),
    "Antigua and Barbuda": (),
    "Argentina": (),
    "Armenia": (),
    "Australia": (),
    "Austria": (),
    "Bahamas": ("The Bahamas",),
    "Bahrain": (),
    "Bangladesh": (),
    "Barbados": (),
    "Belarus": (),
    "Belgium": (),
    "Belize": (),
    "Benin": (),
    "Bhutan": (),
    "Bolivia": (),
    "Bosnia and Herzegovina": ("Bosnia",),
    "Botswana": (),
    "Brazil": (),
    "Brunei": ("Brunei Darussalam",),
    "Bulgaria": (),
    "Burkina Faso": (),
    "Burundi": (),
    "Cambodia": (),
    "Cameroon": (),
    "Canada": (),
    "Cape Verde": ("Cabo Verde",),
    "Central African Republic": (),
    "Chad": (),
    "Chile": (),
    "Colombia": (),
    "Comoros": (),
    "Costa Rica": (),
    "Croatia": (),
    "Cuba": (),
    "Cyprus": (),
    "Czechia": ("Czech Republic",),
    "Democratic Republic of the Congo": ("DR Congo", "DRC", "Congo-Kinshasa"),
    "Denmark": (),
    "Djibouti": (),
    "Dominica": (),
    "Dominican Republic": (),
    "East Timor": ("Timor-Leste",),
    "Ecuador": (),
    "Egypt": (),
    "El Salvador": (),
    "Equatorial Guinea": (),
    "Eritrea": (),
    "Estonia": (),
    "Eswatini": ("Swaziland",),
    "Fiji": (),
    "Finland": (),
    "France": (),
    "Gabon": (),
    "Gambia": ("The Gambia",),
    "Georgia": (),
    "Germany": (),
    "Ghana": (),
    "Grenada": (),
    "Guatemala": (),
    "Guinea": (),
    "Guinea-Bissau": (),
    "Guyana": (),
    "Haiti": (),
    "Honduras": (),
    "Hong Kong": (),
    "Hungary": (),
    "Iceland": (),
    "India": (),
    "Iraq": (),
    "Ireland": ("Republic of Ireland",),
    "Israel": (),
    "Italy": (),
    "Ivory Coast": ("Cote d'Ivoire", "Côte d'Ivoire"),
    "Jamaica": (),
    "Japan": (),
    "Jordan": (),
    "Kazakhstan": (),
    "Kenya": (),
    "Kiribati": (),
    "Kosovo": (),
    "Kuwait": (),
    "Kyrgyzstan": (),
    "Laos": ("Lao PDR",),
    "Latvia": (),
    "Lebanon": (),
    "Lesotho": (),
    "Liberia": (),
    "Libya": (),
    "Liechtenstein": (),
    "Lithuania": (),
    "Luxembourg": (),
    "Madagascar": (),
    "Malawi": (),
    "Malaysia": (),
    "Maldives": (),
    "Mali": (),
    "Malta": (),
    "Marshall Islands": (),
    "Mauritania": (),
    "Mauritius": (),
    "Micronesia": (),
    "Moldova": (),
    "Monaco": (),
    "Mongolia": (),
    "Montenegro": (),
    "Morocco": (),
    "Mozambique": (),
    "Myanmar": ("Burma",),
    "Namibia": (),
    "Nauru": (),
    "Nepal": (),
    "Netherlands": ("Holland", "The Netherlands"),
    "New Zealand": (),
    "Nicaragua": (),
    "Niger": (),
    "Nigeria": (),
    "North Macedonia": ("Macedonia",),
    "Norway": (),
    "Oman": (),
    "Pakistan": (),
    "Palau": (),
    "Palestine": (),
    "Panama": (),
    "Papua New Guinea": (),
    "Paraguay": (),
    "Peru": (),
    "Philippines": ("The Philippines",),
    "Poland": (),
    "Portugal": (),
    "Puerto Rico": (),
    "Qatar": (),
    "Republic of the Congo": ("Congo-Brazzaville", "Congo"),
    "Romania": (),
    "Russia": ("Russian Federation",),
    "Rwanda": (),
    "Saint Kitts and Nevis": (),
    "Saint Lucia": (),
    "Saint Vincent and the Grenadines": (),
    "Samoa": (),
    "San Marino": (),
    "Sao Tome and Principe": ("São Tomé and Príncipe",),
    "Saudi Arabia": (),
    "Senegal": (),
    "Serbia": (),
    "Seychelles": (),
    "Sierra Leone": (),
    "Singapore": (),
    "Slovakia": (),
    "Slovenia": (),
    "Solomon Islands": (),
    "Somalia": (),
    "South Africa": (),
    "South Sudan": (),
    "Sri Lanka": (),
    "Sudan": (),
    "Suriname": (),
    "Sweden": (),
    "Switzerland": (),
    "Syria": (),
    "Taiwan": (),
    "Tajikistan": (),
    "Tanzania": (),
    "Thailand": (),
    "Togo": (),
    "Tonga": (),
    "Trinidad and Tobago": (),
    "Tunisia": (),
    "Turkey": ("Türkiye", "Turkiye"),
    "Turkmenistan": (),
    "Tuvalu": (),
    "Uganda": (),
    "Ukraine": (),
    "United Arab Emirates": ("UAE",),
    "Uruguay": (),
    "Uzbekistan": (),
    "Vanuatu": (),
    "Vatican City": ("Holy See",),
    "Venezuela": (),
    "Vietnam": ("Viet Nam",),
    "Yemen": (),
    "Zambia": (),
    "Zimbabwe": (),
}


def _key(name: str) -> str:
    """Comparison form of a name: accents and punctuation dropped, case folded, 'the' dropped."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("_", " ").replace("&", " and ").casefold()
    text = re.sub(r"[^\w\s-]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text.removeprefix("the ")


@cache
def _lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    for canonical, aliases in _ALIASES.items():
        for name in (canonical, *aliases):
            key = _key(name)
            if key in table and table[key] != canonical:
                raise AssertionError(f"country alias '{name}' maps to two countries")
            table[key] = canonical
    return table


def known_countries() -> list[str]:
    """Canonical names of every known country and BLEnD region, sorted."""
    return sorted(_ALIASES)


def canonical_country(name: str) -> str | None:
    """Canonical name of a country spelled `name` ('United States' → 'US'), or None if unknown."""
    if not isinstance(name, str) or not name.strip():
        return None
    return _lookup().get(_key(name))


def blend_regions() -> list[str]:
    """Canonical names of the 16 BLEnD regions ('South Korea', 'UK', ...)."""
    return sorted(name.replace("_", " ") for name in BLEND_REGIONS)


def is_blend_country(canonical: str) -> bool:
    """Whether a canonical country name is one of the 16 BLEnD regions."""
    return normalize_region(canonical) in BLEND_REGIONS
