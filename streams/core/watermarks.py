"""Source completeness and the live clock (SPEC section 4), as pure logic: no Faust, no wall clock of
its own -- every question is asked for a wall time the caller gives.

Each source declares how far it is complete: ``(source, complete_through)``, with the wall time the
declaration arrived. A watermark never moves backwards. The clock's time is the lowest watermark
among the *gating* sources, never beyond the wall clock; a gating source whose watermark has not
advanced for ``max_source_silence`` of wall time (or that has declared nothing since the clock
started that long ago) stops holding the clock back, and the ticks it then lets through name it as
incomplete.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_GATING = ("education", "insurance", "tax")
DEFAULT_MAX_SOURCE_SILENCE_MS = 48 * 3_600_000


class Watermark(NamedTuple):
    complete_through: int  # epoch ms: the source has delivered everything recorded up to here
    advanced_at: int  # wall time (epoch ms) of the declaration that last moved it forward


class SourceWatermarks:
    """The watermarks of every source that declared one, and the clock they allow."""

    def __init__(
        self,
        started_at: int,
        gating: tuple[str, ...] = DEFAULT_GATING,
        max_source_silence_ms: int = DEFAULT_MAX_SOURCE_SILENCE_MS,
    ) -> None:
        """``started_at``: the wall time the clock started (a gating source silent since then counts
        from it)."""
        if max_source_silence_ms <= 0:
            raise ValueError(f"max_source_silence must be positive, not {max_source_silence_ms} ms")
        self.started_at = started_at
        self.gating = tuple(sorted(set(gating)))
        self.max_source_silence_ms = max_source_silence_ms
        self.marks: dict[str, Watermark] = {}

    def declare(self, source: str, complete_through: int, wall: int) -> bool:
        """Take a declaration that arrived at wall time ``wall``; False when it does not advance the
        source's watermark (an equal or earlier one changes nothing, not even the silence count)."""
        current = self.marks.get(source)
        if current is not None and complete_through <= current.complete_through:
            return False
        self.marks[source] = Watermark(complete_through, wall)
        return True

    def watermark(self, source: str) -> int | None:
        mark = self.marks.get(source)
        return None if mark is None else mark.complete_through

    def silent(self, source: str, wall: int) -> bool:
        """Whether the source's watermark has not advanced for ``max_source_silence`` by ``wall``."""
        mark = self.marks.get(source)
        since = self.started_at if mark is None else mark.advanced_at
        return wall - since >= self.max_source_silence_ms

    def holding(self, wall: int) -> tuple[str, ...]:
        """The gating sources that hold the clock back at ``wall`` (those not silent)."""
        return tuple(source for source in self.gating if not self.silent(source, wall))

    def clock_time(self, wall: int) -> int | None:
        """The clock's time at ``wall``: the lowest watermark among the gating sources that hold it,
        never beyond ``wall``; None while one of them has declared nothing yet (no tick is due).

        The time can go back when a silent source speaks again below it; the ticks written meanwhile
        stay, and the writer waits until the clock passes its last tick again."""
        lowest = wall
        for source in self.holding(wall):
            mark = self.marks.get(source)
            if mark is None:
                return None
            lowest = min(lowest, mark.complete_through)
        return lowest

    def incomplete(self, at: int) -> tuple[str, ...]:
        """The gating sources whose watermark is below ``at`` (or that declared none), sorted: what a
        tick at ``at`` records as not known."""
        return tuple(
            source for source in self.gating if (mark := self.marks.get(source)) is None or mark.complete_through < at
        )
