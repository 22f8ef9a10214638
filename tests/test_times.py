"""Instants as integers (``schemas/times.py``): the integer arithmetic that renders and parses them
gives exactly what datetime arithmetic gives, over the whole range a datetime can hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.models import ClockTick
from schemas.times import CST, datetime_to_ms, format_instant, parse_instant

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
LAST = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


@given(st.integers(FIRST, LAST))
def test_format_instant_is_the_datetime_rendering(ms: int) -> None:
    expected = (EPOCH + timedelta(milliseconds=ms)).astimezone(CST).isoformat(timespec="milliseconds")
    assert format_instant(ms) == expected


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.one_of(
        st.none(), st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
    ),
)
def test_datetime_to_ms_is_the_datetime_difference(value: datetime, offset: timedelta | None) -> None:
    aware = value.replace(tzinfo=CST if offset is None else timezone(offset))
    assert datetime_to_ms(value if offset is None else aware) == (aware - EPOCH) // timedelta(milliseconds=1)


def test_known_instants() -> None:
    assert format_instant(0) == "1970-01-01T08:00:00.000+08:00"
    assert format_instant(-1) == "1970-01-01T07:59:59.999+08:00"
    assert parse_instant("2023-12-31 23:30") == 1704036600000
    assert format_instant(parse_instant("2023-12-31T23:30:00.123+08:00")) == "2023-12-31T23:30:00.123+08:00"
    assert parse_instant("2023-12-31T15:30:00.123999Z") == parse_instant("2023-12-31T23:30:00.123+08:00")


def test_parse_instant_refuses_what_format_instant_could_not_show() -> None:
    assert format_instant(parse_instant("0001-01-01T00:00:00+08:00")) == "0001-01-01T00:00:00.000+08:00"
    assert format_instant(parse_instant("9999-12-31T23:59:59.999")) == "9999-12-31T23:59:59.999+08:00"
    for text in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+09:00"):
        with pytest.raises(ValueError, match="outside years 1-9999"):
            parse_instant(text)


def test_an_event_refuses_an_instant_no_text_could_show_however_it_is_given() -> None:
    """As text, as epoch milliseconds (a live message, a Python caller) or as a datetime (an Avro
    timestamp-millis read by fastavro): the same bounds, so the rules never meet such a time."""
    last = parse_instant("9999-12-31T23:59:59.999+08:00")
    assert ClockTick.model_validate({"event_id": "0" * 32, "occurred_at": last}).occurred_at == last
    for given_as in ("9999-12-31T23:59:59-12:00", last + 1, datetime(9999, 12, 31, 20, tzinfo=UTC)):
        with pytest.raises(ValidationError, match="outside years 1-9999"):
            ClockTick.model_validate({"event_id": "0" * 32, "occurred_at": given_as})
