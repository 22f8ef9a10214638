"""The wall clock's schedule: aligned ticks and every checkpoint tick at its own instant."""

from __future__ import annotations

import io

from schemas.codec import decode_message, encode_message, read_event_container, to_json_line, write_event_container
from schemas.times import MS_PER_DAY, parse_instant
from streams.core.clock import aligned_tick, due_ticks, make_tick

HOUR = 3_600_000


def test_ticks_align_to_local_midnight_and_the_hour() -> None:
    assert aligned_tick(parse_instant("2024-01-01T09:40:00+08:00"), HOUR) == parse_instant("2024-01-01T09:00:00+08:00")
    daily = aligned_tick(parse_instant("2024-01-01T07:59:00+08:00"), MS_PER_DAY)
    assert daily == parse_instant("2024-01-01T00:00:00+08:00")


def test_a_checkpoint_between_two_ticks_is_written_at_its_own_instant() -> None:
    checkpoint = parse_instant("2024-01-01T00:00:00+08:00")
    seven_hours = 7 * HOUR  # an interval whose ticks never fall on local midnight
    last = aligned_tick(parse_instant("2023-12-31T22:00:00+08:00"), seven_hours)
    now = last + seven_hours + 60_000
    assert checkpoint not in {last, aligned_tick(now, seven_hours)}
    assert due_ticks(last, now, seven_hours, [checkpoint]) == [checkpoint, aligned_tick(now, seven_hours)]
    # Nothing is written twice, and a checkpoint already passed is not written again.
    assert due_ticks(aligned_tick(now, seven_hours), now + 1000, seven_hours, [checkpoint]) == []


def test_a_new_leader_looks_back_one_interval() -> None:
    checkpoint = parse_instant("2024-01-01T00:00:00+08:00")
    now = checkpoint + 30 * 60_000
    assert due_ticks(None, now, HOUR, [checkpoint - 2 * HOUR, checkpoint]) == [checkpoint]


def test_a_tick_names_the_sources_it_lacked_sorted_and_a_complete_tick_is_the_tick_it_always_was() -> None:
    at = parse_instant("2023-10-01T00:00:00+08:00")
    incomplete = make_tick(at, ("tax", "insurance"))
    assert incomplete.incomplete == ("insurance", "tax")
    assert make_tick(at, ()).incomplete is None
    assert to_json_line(
        make_tick(at)
    ) == b'{"event_id":"%s","type":"ClockTick","occurred_at":"2023-10-01T00:00:00.000+08:00"}' % (
        make_tick(at).event_id.encode()
    )
    # On a topic and in an archive it travels as written.
    assert decode_message(encode_message(incomplete), ("ClockTick",)) == incomplete
    archive = io.BytesIO()
    write_event_container(archive, [incomplete, make_tick(at + 1)])
    archive.seek(0)
    assert list(read_event_container(archive)) == [incomplete, make_tick(at + 1)]
