"""The dashboard's view of source completeness: each source's furthest watermark, and the lowest one
(the source the live clock waits for)."""

from __future__ import annotations

from enrollbridge.dashboard import LiveFigures
from schemas.models import SourceWatermark
from schemas.times import parse_instant
from streams.core.policy import load_policies


def _declared(source: str, through: str, at: str = "2024-01-02T09:00") -> SourceWatermark:
    return SourceWatermark(
        source=source, complete_through=parse_instant(through), declared_at=parse_instant(at), origin="test"
    )


def test_each_source_shows_its_furthest_watermark_and_the_lowest_is_marked() -> None:
    policy = load_policies().get("450200", 2024)
    assert policy is not None
    figures = LiveFigures(policy)
    figures.add_watermark(_declared("education", "2023-12-31T00:00"))
    figures.add_watermark(_declared("tax", "2024-01-01T00:00"))
    figures.add_watermark(_declared("tax", "2023-11-01T00:00"))  # an earlier declaration moves nothing back
    shown = {row["source"]: row for row in figures.snapshot()["sources"]}
    assert shown["tax"]["complete_through"] == "2024-01-01 00:00:00"
    assert shown["education"]["lowest"] and not shown["tax"]["lowest"]
    assert shown["insurance"]["complete_through"] is None and not shown["insurance"]["lowest"]
    assert shown["education"]["label"] == "教育部门学籍"
