"""The live clock: the sources' watermarks in, ticks for every partition of the unified log out.

A tick at T claims that everything before T is known. So the clock does not follow the wall clock
alone: its time is the lowest watermark of the gating sources (``streams.core.watermarks``), never
beyond the wall clock, and a tick written while a source was let go for silence names it in
``incomplete``. Ticks fall at the same instants as before: every ``tick_interval`` aligned to local
midnight, and each policy checkpoint's 00:00 tick (``streams.core.clock.due_ticks``).

No Faust here: the adapter calls ``LiveClock.due`` from the leader's timer with the wall time, and
``WatermarkFeed`` reads the declarations from their topic.
"""

from __future__ import annotations

from typing import Any

from infra.readback import TopicTail
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import UndecodableMessage, decode_message
from schemas.models import ClockTick, SourceWatermark
from schemas.times import format_instant
from streams.core.clock import due_ticks, make_tick
from streams.core.policy import PolicyBook
from streams.core.watermarks import SourceWatermarks


class LiveClock:
    """What the leader's clock has written, and what it may write next."""

    def __init__(
        self,
        policies: PolicyBook,
        started_at: int,
        interval_ms: int,
        gating: tuple[str, ...],
        max_source_silence_ms: int,
    ) -> None:
        self.watermarks = SourceWatermarks(started_at, gating, max_source_silence_ms)
        self.interval_ms = interval_ms
        self.checkpoint_ticks = policies.checkpoint_tick_times()
        self.last: int | None = None  # the last tick written; a new leader looks back one interval

    def declare(self, watermark: SourceWatermark, wall: int) -> bool:
        return self.watermarks.declare(watermark.source, watermark.complete_through, wall)

    def due(self, wall: int) -> list[ClockTick]:
        """The ticks to write now, in time order (none while a gating source has declared nothing)."""
        now = self.watermarks.clock_time(wall)
        if now is None or (self.last is not None and now <= self.last):
            return []
        ticks = [make_tick(at, self.watermarks.incomplete(at)) for at in due_ticks(self.last, now, self.interval_ms,
                                                                                   self.checkpoint_ticks)]  # fmt: skip
        if ticks:
            self.last = ticks[-1].occurred_at
        return ticks

    def status(self, wall: int) -> dict[str, Any]:
        """For the worker's status page: each source's watermark, the clock, what holds it back."""
        now = self.watermarks.clock_time(wall)
        return {
            "clock_time": format_instant(now) if now is not None else None,
            "last_tick": format_instant(self.last) if self.last is not None else None,
            "gating": list(self.watermarks.gating),
            "holding": list(self.watermarks.holding(wall)),
            "watermarks": {
                source: format_instant(mark.complete_through) for source, mark in sorted(self.watermarks.marks.items())
            },
        }


class WatermarkFeed:
    """The watermarks topic from its beginning: every declaration any source made."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tail: TopicTail | None = None  # its consumer must be made on the running loop
        self.undecodable = 0

    async def read(self) -> list[SourceWatermark]:
        """Declarations that arrived since the last call."""
        if self.tail is None:
            settings = self.settings
            self.tail = TopicTail(settings, Topics(settings.topic_prefix).watermarks, settings.partitions)
            await self.tail.start()
        found = []
        for record in await self.tail.drain(quiet_ms=5):
            try:
                watermark = decode_message(record.value or b"", ("SourceWatermark",))
            except UndecodableMessage:
                self.undecodable += 1  # counted on the status page; a bad declaration never moves the clock
                continue
            assert isinstance(watermark, SourceWatermark)
            found.append(watermark)
        return found

    async def stop(self) -> None:
        if self.tail is not None:
            await self.tail.stop()
            self.tail = None
