"""Field types of agency records: normalising, parsing, and the dead-letter code of each failure.

Values arrive as text (CSV), as JSON scalars (JSON Lines, HTTP) or as typed cells (XLSX: numbers,
datetimes). Every cell is first normalised (``cell_text``: Unicode NFKC, so full-width digits and
letters and the ideographic space are ordinary input; tabs and line breaks as spaces; surrounding
space trimmed), then held to its field's length limit and refused if it still holds a control
character, then parsed. Each failure raises a ``PydanticCustomError`` whose type is the dead-letter
error code; no message echoes more than a field's limit of what was read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from connectors.identity import IdentityNumberError, normalise, redact
from schemas.regions import is_region_code
from schemas.times import date_to_days, datetime_to_ms, parse_date, parse_instant

MISSING_FIELD = "MISSING_FIELD"
TOO_LONG = "TOO_LONG"
BAD_CHARACTER = "BAD_CHARACTER"

FIELD_MAX = 64
"""Characters (after normalisation) in any field without a limit of its own: codes, references,
times, amounts, regions, enums, the identity number, ``channel``."""
NAME_MAX = 128
"""Characters in ``school_name`` and ``name``."""
ID_TYPE_MAX = 8
"""Characters in ``id_type`` (SPEC section 2)."""
_RAW_MAX = 4096
"""A cell longer than this before normalisation is too long for every field (all limits are far
below): it is not normalised at all (NFKC can make text up to 18 times longer)."""

# Explicit ASCII digits: ``\d``, ``str.isdigit()`` and ``int()`` also take Arabic-Indic and other
# digits, which NFKC leaves as they are and no agency code contains.
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")
_YEAR = re.compile(r"[0-9]{4}")
_MAX_FEN = 2**63 - 1
# Control characters that only space text out (Excel's Alt+Enter line break, tabs): a space.
_SPACING = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85]")
# Every other control character, the bidirectional embeddings, overrides and isolates (U+202A-202E,
# U+2066-2069: they reorder what follows them when a person reads the cell, so a school's code shown
# beside its name reads backwards) and lone surrogates (not text at all) make a cell unusable.
BIDI_CONTROLS = r"\u202a-\u202e\u2066-\u2069"  # a character class's ranges (enrollbridge.sheets too)
_CONTROL = re.compile(rf"[\x00-\x1f\x7f-\x9f{BIDI_CONTROLS}\ud800-\udfff]")


def cell_text(value: Any) -> str | None:
    """A cell as normalised text, or None when it is empty.

    Whole floats from spreadsheets lose their ``.0``; XLSX dates and times become ISO text.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        value = str(value)
    if not (value.isascii() and value.isprintable()):  # printable ASCII is its own NFKC form: most cells
        value = _SPACING.sub(" ", unicodedata.normalize("NFKC", value))
    return value.strip() or None


def printable(text: str, limit: int, length: int | None = None) -> str:
    """Text safe to show or copy: control characters as ``\\uNNNN``, cut to ``limit`` characters with
    the full ``length`` (by default the text's own) noted when it was longer."""
    length = len(text) if length is None else length
    shown = _CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text[:limit])
    return shown if length <= limit else f"{shown}… ({length:,} characters)"


def _text(value: Any, limit: int) -> str | None:
    """A cell's normalised text held to ``limit`` characters and free of control characters."""
    if value.__class__ is str and len(value) <= limit and value.isascii() and value.isprintable():
        return value.strip() or None  # most cells: printable ASCII is its own normal form, and short
    if isinstance(value, str) and len(value) > _RAW_MAX:
        raise PydanticCustomError(
            TOO_LONG, "{length} characters, at most {limit}", {"length": f"{len(value):,}", "limit": limit}
        )
    text = cell_text(value)
    if text is None:
        return None
    if len(text) > limit:
        raise PydanticCustomError(
            TOO_LONG, "{length} characters, at most {limit}", {"length": f"{len(text):,}", "limit": limit}
        )
    control = None if text.isprintable() else _CONTROL.search(text)
    if control is not None:
        raise PydanticCustomError(
            BAD_CHARACTER,
            "holds the control character U+{code} (character {position})",
            {"code": f"{ord(control.group()):04X}", "position": control.start() + 1},
        )
    return text


def _present(value: Any, limit: int = FIELD_MAX) -> str:
    if value.__class__ is str and len(value) <= limit and value.isascii() and value.isprintable():
        text: str | None = value.strip()  # as in _text, without the call: every record has several
    else:
        text = _text(value, limit)
    if not text:
        raise PydanticCustomError(MISSING_FIELD, "required value is empty")
    return text


def _free_text(limit: int, *, required: bool) -> Callable[[Any], str | None]:
    """Free text (codes, references, names): identity numbers typed into it are masked, so they
    never reach a topic (a national student number is ``G`` + the identity number)."""

    def parse(value: Any) -> str | None:
        text = _present(value, limit) if required else _text(value, limit)
        # Shorter than an identity number: nothing to mask (most codes), without the call.
        return text if text is None or len(text) < 15 else redact(text)

    return parse


def _identity_number(value: Any) -> str:
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "BAD_ID_FORMAT", "identity number is stored as a number (digits are lost); store the column as text"
        )
    try:
        return normalise(_present(value))
    except IdentityNumberError as error:
        raise PydanticCustomError(error.code, str(error)) from None


def _region(value: Any) -> str:
    text = _present(value)
    if not (text.isascii() and is_region_code(text)):
        raise PydanticCustomError("BAD_REGION", "not a 6-digit GB/T 2260 region code: {value}", {"value": text})
    return text


def _instant(value: Any) -> int:
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    if isinstance(value, date):
        return datetime_to_ms(datetime(value.year, value.month, value.day))
    text = _present(value)
    try:
        if not text.isascii():
            raise ValueError(text)
        return parse_instant(text)
    except ValueError:
        raise PydanticCustomError("BAD_TIME", "not an ISO 8601 time: {value}", {"value": text}) from None


def _optional_instant(value: Any) -> int | None:
    return None if _text(value, FIELD_MAX) is None else _instant(value)


def _local_date(value: Any) -> int:
    if isinstance(value, datetime | date):
        return date_to_days(value if not isinstance(value, datetime) else value.date())
    text = _present(value)
    try:
        if not text.isascii():
            raise ValueError(text)
        return parse_date(text)
    except ValueError:
        raise PydanticCustomError("BAD_DATE", "not an ISO 8601 date (YYYY-MM-DD): {value}", {"value": text}) from None


def _optional_local_date(value: Any) -> int | None:
    return None if _text(value, FIELD_MAX) is None else _local_date(value)


def _amount_fen(value: Any) -> int:
    if isinstance(value, float):
        value = Decimal(repr(value))
    text = _present(value)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise PydanticCustomError(
            "BAD_AMOUNT", "not an amount in yuan with up to two decimals: {value}", {"value": text}
        )
    if match[1]:
        raise PydanticCustomError("NEGATIVE_AMOUNT", "amount must not be negative: {value}", {"value": text})
    fen = int(match[2]) * 100 + int((match[3] or "0").ljust(2, "0"))
    if fen > _MAX_FEN:  # held as an Avro long, and its content id's JSON holds no more either
        raise PydanticCustomError("BAD_AMOUNT", "amount is too large: {value}", {"value": text})
    return fen


def _coverage_year(value: Any) -> int:
    text = _present(value)
    if not _YEAR.fullmatch(text) or not 1990 <= int(text) <= 2100:
        raise PydanticCustomError("BAD_YEAR", "not a coverage year (1990-2100): {value}", {"value": text})
    return int(text)


def enum_field(symbols: type[StrEnum], codes: dict[str, str] | None = None, *, optional: bool = False) -> Any:
    """A field holding one of the enum's symbols (case and surrounding space ignored) or a national code.

    An optional one is None when the cell is absent or empty.
    """
    allowed = {member.value: member.value for member in symbols}
    allowed.update(codes or {})
    listing = ", ".join(allowed)

    def parse(value: Any) -> str | None:
        text = _text(value, FIELD_MAX)
        if text is None:
            if optional:
                return None
            raise PydanticCustomError(MISSING_FIELD, "required value is empty")
        if text.upper() not in allowed:
            raise PydanticCustomError(
                "UNKNOWN_ENUM", "{value} is not one of {allowed}", {"value": text.upper(), "allowed": listing}
            )
        return allowed[text.upper()]

    return Annotated[str | None if optional else str, BeforeValidator(parse)]


RequiredText = Annotated[str, BeforeValidator(_free_text(FIELD_MAX, required=True))]
OptionalText = Annotated[str | None, BeforeValidator(_free_text(FIELD_MAX, required=False))]
OptionalName = Annotated[str | None, BeforeValidator(_free_text(NAME_MAX, required=False))]
IdType = Annotated[str | None, BeforeValidator(_free_text(ID_TYPE_MAX, required=False))]
IdentityNumber = Annotated[str, BeforeValidator(_identity_number)]
Region = Annotated[str, BeforeValidator(_region)]
Instant = Annotated[int, BeforeValidator(_instant)]
OptionalInstant = Annotated[int | None, BeforeValidator(_optional_instant)]
LocalDate = Annotated[int, BeforeValidator(_local_date)]
OptionalLocalDate = Annotated[int | None, BeforeValidator(_optional_local_date)]
AmountFen = Annotated[int, BeforeValidator(_amount_fen)]
CoverageYear = Annotated[int, BeforeValidator(_coverage_year)]
