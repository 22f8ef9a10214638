"""Alert summary: the final state of every alert, counted by kind, pool and county."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from schemas.models import AlertRecord
from streams.core.rules import KIND_ORDER


class _Last(NamedTuple):
    kind: str
    status: str
    pool: str
    county: str


class AlertTally:
    """Keeps the latest transition of each alert; counts are of alerts, not of records."""

    def __init__(self) -> None:
        self.latest: dict[str, _Last] = {}
        self.records = 0

    def add(self, alert: AlertRecord) -> None:
        self.records += 1
        self.latest[alert.alert_id] = _Last(alert.kind, alert.status, alert.pool, alert.details.county)

    def by_kind(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {kind: Counter() for kind in KIND_ORDER}
        for last in self.latest.values():
            counts[last.kind][last.status] += 1
        return counts

    def open_by_county(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for last in self.latest.values():
            if last.status == "OPEN":
                counts.setdefault(last.county, Counter())[last.kind] += 1
        return dict(sorted(counts.items()))

    def resolved_by_county(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for last in self.latest.values():
            if last.status == "RESOLVED":
                counts.setdefault(last.county, Counter())[last.kind] += 1
        return dict(sorted(counts.items()))

    def render(self) -> str:
        """A plain-text table: open and resolved per kind, then open (resolved) per county and kind."""
        short = {
            kind: kind.replace("_ENROLLMENT", "").replace("HARDSHIP_WRONG_PLACE", "WRONG_PLACE") for kind in KIND_ORDER
        }
        lines = [
            f"{len(self.latest)} alerts from {self.records} records",
            "",
            f"{'kind':<22}{'open':>10}{'resolved':>10}",
        ]
        for kind, counts in self.by_kind().items():
            lines.append(f"{kind:<22}{counts['OPEN']:>10}{counts['RESOLVED']:>10}")
        opened, resolved = self.open_by_county(), self.resolved_by_county()
        counties = sorted(set(opened) | set(resolved))
        if counties:
            lines += [
                "",
                "open (resolved) by county",
                f"{'county':<8}" + "".join(f"{short[k]:>20}" for k in KIND_ORDER),
            ]
            for county in counties:
                cells = "".join(
                    f"{f'{opened.get(county, Counter())[k]} ({resolved.get(county, Counter())[k]})':>20}"
                    for k in KIND_ORDER
                )
                lines.append(f"{county:<8}{cells}")
        return "\n".join(lines)
