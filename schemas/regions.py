"""GB/T 2260 region codes and pooling areas (统筹区)."""

from __future__ import annotations

import re

# First two digits of GB/T 2260 codes: provinces, autonomous regions, municipalities, SARs, Taiwan.
PROVINCE_PREFIXES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    ]
)
_SIX_DIGITS = re.compile(r"\d{6}")


def is_region_code(code: str) -> bool:
    """Six digits whose first two name a province-level division."""
    return bool(_SIX_DIGITS.fullmatch(code)) and code[:2] in PROVINCE_PREFIXES


def pool_of(region: str) -> str:
    """The pooling area of a region: its first 4 digits followed by ``00`` (450202 -> 450200)."""
    return region[:4] + "00"
