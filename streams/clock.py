"""Clock ticks: the only way time enters the rules (SPEC section 4)."""

from __future__ import annotations

from schemas.codec import encode_message, new_event
from schemas.models import ClockTick


def make_tick(at: int) -> ClockTick:
    """The tick for an instant; its content id makes the same instant the same tick everywhere."""
    return new_event(ClockTick, occurred_at=at)


def tick_message(at: int) -> bytes:
    """A tick as a message value on the unified log."""
    return encode_message(make_tick(at))
