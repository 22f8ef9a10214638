"""Time in enrollbridge: China Standard Time, held as integers.

Instants are milliseconds since the Unix epoch (Avro ``timestamp-millis``); local dates are days
since 1970-01-01 (Avro ``date``). Canonical JSON shows instants as ISO 8601 in +08:00 with
milliseconds, so the same instant always renders to the same bytes.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

CST = timezone(timedelta(hours=8), "CST")
MS_PER_DAY = 86_400_000
_CST_OFFSET_MS = 8 * 3_600_000
_CST_OFFSET_US = _CST_OFFSET_MS * 1000
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_MICROSECOND = timedelta(microseconds=1)
# The instants format_instant can show: 0001-01-01T00:00:00.000+08:00 to 9999-12-31T23:59:59.999+08:00.
_FIRST_INSTANT = (date.min.toordinal() - _EPOCH_ORDINAL) * MS_PER_DAY - _CST_OFFSET_MS
_LAST_INSTANT = (date.max.toordinal() + 1 - _EPOCH_ORDINAL) * MS_PER_DAY - _CST_OFFSET_MS - 1
_FIRST_DAY, _LAST_DAY = date.min.toordinal() - _EPOCH_ORDINAL, date.max.toordinal() - _EPOCH_ORDINAL


def parse_instant(text: str) -> int:
    """ISO 8601 text to epoch milliseconds; a time without an offset is China Standard Time.

    Raises ValueError for anything that is not an ISO 8601 date or date-time, and for an instant
    whose China Standard Time date is outside years 1-9999 (e.g. ``9999-12-31T23:00-12:00``): it
    could never be shown again.
    """
    value = datetime.fromisoformat(text.strip())
    return showable_instant(datetime_to_ms(value), text)


def showable_instant(ms: int, given: object = None) -> int:
    """``ms`` when its China Standard Time date falls in years 1-9999 (what ``format_instant`` can show),
    else a ValueError naming ``given`` (the value as it came, by default ``ms``)."""
    if not _FIRST_INSTANT <= ms <= _LAST_INSTANT:
        raise ValueError(f"{ms if given is None else given!r} is outside years 1-9999 in China Standard Time")
    return ms


def datetime_to_ms(value: datetime) -> int:
    """A datetime to epoch milliseconds (rounded down); a naive datetime is China Standard Time."""
    # Integer arithmetic on the fields: a third of the time of subtracting datetimes (every record's
    # time goes through here), and exact, as the datetime arithmetic was.
    offset = value.utcoffset()
    offset_us = _CST_OFFSET_US if offset is None else offset // _MICROSECOND
    seconds = (value.toordinal() - _EPOCH_ORDINAL) * 86_400 + value.hour * 3600 + value.minute * 60 + value.second
    return (seconds * 1_000_000 + value.microsecond - offset_us) // 1000


def format_instant(ms: int) -> str:
    """Epoch milliseconds to canonical ISO 8601, e.g. ``2023-12-31T23:30:00.000+08:00``."""
    # From integers rather than through a timezone-aware datetime: the same text in a third of the
    # time (every event's content id renders its instants).
    days, in_day = divmod(ms + _CST_OFFSET_MS, MS_PER_DAY)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return "%sT%02d:%02d:%02d.%03d+08:00" % (_day_text(days), hour, minute, second, millis)  # noqa: UP031 -- faster


@lru_cache(maxsize=1024)  # a season's instants fall on a few hundred days
def _day_text(days: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def parse_date(text: str) -> int:
    """``YYYY-MM-DD`` to days since 1970-01-01."""
    return date_to_days(date.fromisoformat(text.strip()))


def showable_days(days: int, given: object = None) -> int:
    """``days`` (since 1970-01-01) when they name a date in years 1-9999 (what ``format_date`` can
    show), else a ValueError naming ``given`` (the value as it came, by default ``days``)."""
    if not _FIRST_DAY <= days <= _LAST_DAY:
        raise ValueError(f"{days if given is None else given!r} days from 1970-01-01 is outside years 1-9999")
    return days


def date_to_days(value: date) -> int:
    return (value - _EPOCH_DATE).days


def days_to_date(days: int) -> date:
    return _EPOCH_DATE + timedelta(days=days)


def format_date(days: int) -> str:
    return days_to_date(days).isoformat()


def local_day(ms: int) -> int:
    """The China Standard Time date (as days since epoch) that contains the instant."""
    return (ms + _CST_OFFSET_MS) // MS_PER_DAY


def start_of_local_day(days: int) -> int:
    """The instant 00:00:00.000 China Standard Time of the given local date."""
    return days * MS_PER_DAY - _CST_OFFSET_MS


def end_of_local_day(days: int) -> int:
    """The last millisecond of the given local date (``23:59:59.999+08:00``)."""
    return start_of_local_day(days + 1) - 1


def add_months(days: int, months: int) -> int:
    """A local date plus whole months; the day is clamped to the end of a shorter month."""
    start = days_to_date(days)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date_to_days(date(year, month, day))


def year_bounds(year: int) -> tuple[int, int]:
    """First and last local date (days since epoch) of a calendar (coverage) year."""
    return date_to_days(date(year, 1, 1)), date_to_days(date(year, 12, 31))
