"""The wall clock's schedule: aligned ticks and every checkpoint tick at its own instant."""

from __future__ import annotations

from schemas.times import MS_PER_DAY, parse_instant
from streams.core.clock import aligned_tick, due_ticks

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
