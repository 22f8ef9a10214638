"""Field types of agency records: parsing, normalising and the dead-letter code of each failure.

Values arrive as text (CSV), as JSON scalars (JSON Lines) or as typed cells (XLSX: numbers,
datetimes). Each type turns them into what the event carries or raises a ``PydanticCustomError``
whose type is the dead-letter error code.
"""

from __future__ import annotations

import re
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
_AMOUNT = re.compile(r"(-?)(\d+)(?:\.(\d{1,2}))?")
_YEAR = re.compile(r"\d{4}")


def cell_text(value: Any) -> str | None:
    """A cell as text, or None when it is empty. Whole floats from spreadsheets lose their ``.0``."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime | date):
        value = value.isoformat()
    text = str(value).strip()
    return text or None


def _present(value: Any) -> str:
    text = cell_text(value)
    if text is None:
        raise PydanticCustomError(MISSING_FIELD, "required value is empty")
    return text


def _reference(value: Any) -> str:
    # A national student number (全国学籍号) is "G" + the identity number: never let it reach a topic.
    return redact(_present(value))


def _optional_text(value: Any) -> str | None:
    return cell_text(value)


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
    if not is_region_code(text):
        raise PydanticCustomError("BAD_REGION", "not a 6-digit GB/T 2260 region code: {value}", {"value": text})
    return text


def _instant(value: Any) -> int:
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    if isinstance(value, date):
        return datetime_to_ms(datetime(value.year, value.month, value.day))
    text = _present(value)
    try:
        return parse_instant(text)
    except ValueError:
        raise PydanticCustomError("BAD_TIME", "not an ISO 8601 time: {value}", {"value": text}) from None


def _local_date(value: Any) -> int:
    if isinstance(value, datetime | date):
        return date_to_days(value if not isinstance(value, datetime) else value.date())
    text = _present(value)
    try:
        return parse_date(text)
    except ValueError:
        raise PydanticCustomError("BAD_DATE", "not an ISO 8601 date (YYYY-MM-DD): {value}", {"value": text}) from None


def _optional_local_date(value: Any) -> int | None:
    return None if cell_text(value) is None else _local_date(value)


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
    return int(match[2]) * 100 + int((match[3] or "0").ljust(2, "0"))


def _coverage_year(value: Any) -> int:
    text = _present(value)
    if not _YEAR.fullmatch(text) or not 1990 <= int(text) <= 2100:
        raise PydanticCustomError("BAD_YEAR", "not a coverage year (1990-2100): {value}", {"value": text})
    return int(text)


def enum_field(symbols: type[StrEnum], codes: dict[str, str] | None = None) -> Any:
    """A field holding one of the enum's symbols (case and surrounding space ignored) or a national code."""
    allowed = {member.value: member.value for member in symbols}
    allowed.update(codes or {})
    listing = ", ".join(allowed)

    def parse(value: Any) -> str:
        text = _present(value).upper()
        if text not in allowed:
            raise PydanticCustomError(
                "UNKNOWN_ENUM", "{value} is not one of {allowed}", {"value": text, "allowed": listing}
            )
        return allowed[text]

    return Annotated[str, BeforeValidator(parse)]


RequiredText = Annotated[str, BeforeValidator(_present)]
Reference = Annotated[str, BeforeValidator(_reference)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
IdentityNumber = Annotated[str, BeforeValidator(_identity_number)]
Region = Annotated[str, BeforeValidator(_region)]
Instant = Annotated[int, BeforeValidator(_instant)]
LocalDate = Annotated[int, BeforeValidator(_local_date)]
OptionalLocalDate = Annotated[int | None, BeforeValidator(_optional_local_date)]
AmountFen = Annotated[int, BeforeValidator(_amount_fen)]
CoverageYear = Annotated[int, BeforeValidator(_coverage_year)]
