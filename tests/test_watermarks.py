"""Source watermarks and the clock they allow (SPEC section 4), one test per clause."""

from __future__ import annotations

import pytest

from streams.core.watermarks import DEFAULT_GATING, DEFAULT_MAX_SOURCE_SILENCE_MS, SourceWatermarks
from tests.support import at

HOUR = 3_600_000
START = at("2023-10-01T00:00")  # wall time the clock started


def _all_declared(marks: SourceWatermarks, through: dict[str, str], wall: int = START) -> None:
    for source, when in through.items():
        marks.declare(source, at(when), wall)


def test_the_defaults_are_the_three_gating_sources_and_48_hours_of_silence() -> None:
    marks = SourceWatermarks(START)
    assert marks.gating == DEFAULT_GATING == ("education", "insurance", "tax")
    assert marks.max_source_silence_ms == DEFAULT_MAX_SOURCE_SILENCE_MS == 48 * HOUR


def test_the_clock_is_the_lowest_watermark_of_the_gating_sources() -> None:
    marks = SourceWatermarks(START)
    _all_declared(marks, {"education": "2023-09-20T00:00", "insurance": "2023-09-10T00:00", "tax": "2023-09-15T00:00"})
    assert marks.clock_time(START + HOUR) == at("2023-09-10T00:00")
    marks.declare("insurance", at("2023-09-30T00:00"), START + HOUR)
    assert marks.clock_time(START + HOUR) == at("2023-09-15T00:00")


def test_a_source_that_does_not_gate_does_not_hold_the_clock() -> None:
    marks = SourceWatermarks(START)
    _all_declared(marks, {"education": "2023-09-20T00:00", "insurance": "2023-09-20T00:00", "tax": "2023-09-20T00:00"})
    marks.declare("hardship", at("2023-01-01T00:00"), START)
    assert marks.clock_time(START) == at("2023-09-20T00:00")
    gated_by_hardship = SourceWatermarks(START, gating=("education", "hardship"))
    _all_declared(gated_by_hardship, {"education": "2023-09-20T00:00", "hardship": "2023-09-01T00:00"})
    assert gated_by_hardship.clock_time(START) == at("2023-09-01T00:00")


def test_the_clock_never_runs_beyond_the_wall_clock() -> None:
    marks = SourceWatermarks(START)
    _all_declared(marks, {source: "2030-01-01T00:00" for source in DEFAULT_GATING})
    assert marks.clock_time(START + HOUR) == START + HOUR


def test_no_clock_until_every_gating_source_has_declared() -> None:
    marks = SourceWatermarks(START)
    _all_declared(marks, {"education": "2023-09-20T00:00", "insurance": "2023-09-20T00:00"})
    assert marks.clock_time(START + HOUR) is None


def test_a_source_that_sent_nothing_since_the_clock_started_stops_holding_it_after_the_silence() -> None:
    marks = SourceWatermarks(START)
    _all_declared(marks, {"education": "2023-09-20T00:00", "insurance": "2023-09-25T00:00"}, START + 40 * HOUR)
    assert marks.clock_time(START + 48 * HOUR - 1) is None
    assert marks.holding(START + 48 * HOUR) == ("education", "insurance")
    assert marks.clock_time(START + 48 * HOUR) == at("2023-09-20T00:00")


def test_a_source_whose_watermark_has_not_advanced_for_the_silence_stops_holding_the_clock() -> None:
    marks = SourceWatermarks(START, max_source_silence_ms=10 * HOUR)
    _all_declared(marks, {"education": "2023-09-20T00:00", "insurance": "2023-09-25T00:00", "tax": "2023-09-10T00:00"})
    marks.declare("education", at("2023-09-28T00:00"), START + 5 * HOUR)
    marks.declare("insurance", at("2023-09-29T00:00"), START + 5 * HOUR)
    assert marks.clock_time(START + 10 * HOUR - 1) == at("2023-09-10T00:00")  # tax still holds it
    assert marks.silent("tax", START + 10 * HOUR) and not marks.silent("education", START + 10 * HOUR)
    assert marks.clock_time(START + 10 * HOUR) == at("2023-09-28T00:00")
    # Once every gating source is silent, only the wall clock is left.
    assert marks.holding(START + 15 * HOUR) == ()
    assert marks.clock_time(START + 15 * HOUR) == START + 15 * HOUR


def test_a_declaration_that_does_not_advance_does_not_end_the_silence() -> None:
    marks = SourceWatermarks(START, max_source_silence_ms=10 * HOUR)
    _all_declared(marks, {source: "2023-09-20T00:00" for source in DEFAULT_GATING})
    assert not marks.declare("tax", at("2023-09-20T00:00"), START + 9 * HOUR)  # the same again
    assert not marks.declare("tax", at("2023-09-01T00:00"), START + 9 * HOUR)  # backwards
    assert marks.watermark("tax") == at("2023-09-20T00:00")
    assert marks.silent("tax", START + 10 * HOUR)


def test_a_silent_source_that_speaks_again_holds_the_clock_again() -> None:
    marks = SourceWatermarks(START, max_source_silence_ms=10 * HOUR)
    _all_declared(marks, {source: "2023-09-20T00:00" for source in DEFAULT_GATING})
    marks.declare("education", at("2023-09-30T00:00"), START + 11 * HOUR)
    marks.declare("insurance", at("2023-09-30T00:00"), START + 11 * HOUR)
    assert marks.clock_time(START + 11 * HOUR) == at("2023-09-30T00:00")
    assert marks.declare("tax", at("2023-09-25T00:00"), START + 12 * HOUR)
    assert marks.clock_time(START + 12 * HOUR) == at("2023-09-25T00:00")


def test_incomplete_names_the_gating_sources_below_a_tick_sorted() -> None:
    marks = SourceWatermarks(START, gating=("tax", "insurance", "education"))
    assert marks.incomplete(at("2023-09-01T00:00")) == ("education", "insurance", "tax")  # none declared
    _all_declared(marks, {"tax": "2023-09-10T00:00", "insurance": "2023-09-30T00:00", "education": "2023-09-05T00:00"})
    marks.declare("hardship", at("2023-01-01T00:00"), START)
    assert marks.incomplete(at("2023-09-10T00:00")) == ("education",)  # complete through its time is complete
    assert marks.incomplete(at("2023-10-01T00:00")) == ("education", "insurance", "tax")
    assert marks.incomplete(at("2023-09-01T00:00")) == ()


def test_the_silence_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_source_silence"):
        SourceWatermarks(START, max_source_silence_ms=0)
