"""Clock ticks: the only way time enters the rules (SPEC section 4)."""

from __future__ import annotations

from schemas.codec import encode_message, new_event
from schemas.models import ClockTick


def make_tick(at: int, incomplete: tuple[str, ...] = ()) -> ClockTick:
    """The tick for an instant; its content id makes the same instant the same tick everywhere.
    ``incomplete``: the gating sources whose watermark was below ``at`` (streams.core.watermarks);
    a complete tick leaves the field out, so it is the same tick as before the field existed."""
    return new_event(ClockTick, occurred_at=at, incomplete=tuple(sorted(incomplete)) or None)


def tick_message(at: int) -> bytes:
    """A tick as a message value on the unified log."""
    return encode_message(make_tick(at))


LOCAL_OFFSET_MS = 8 * 3_600_000  # China Standard Time, UTC+8, no daylight saving


def aligned_tick(now: int, interval_ms: int) -> int:
    """The latest multiple of the interval at or before ``now``, counted from local midnight, so daily
    ticks fall at 00:00 China Standard Time and hourly ones on the hour."""
    return (now + LOCAL_OFFSET_MS) // interval_ms * interval_ms - LOCAL_OFFSET_MS


def due_ticks(last: int | None, now: int, interval_ms: int, checkpoint_ticks: list[int]) -> list[int]:
    """The ticks a wall clock writes at ``now`` when it last wrote ``last``: each checkpoint tick that
    fell in between (so a checkpoint is marked at its own instant whatever the interval) and the
    aligned tick of ``now``. A clock that has not ticked yet looks back one interval."""
    current = aligned_tick(now, interval_ms)
    since = last if last is not None else current - interval_ms
    due = {tick for tick in checkpoint_ticks if since < tick <= now}
    if current > since:
        due.add(current)
    return sorted(due)
