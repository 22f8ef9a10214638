"""Coverage and alert figures of one pool and coverage year, folded from the engine's output.

The input is what the engine writes -- coverage status changes and alert transitions -- in emission
order, from a replay, from the topics or from the sink's history. ``until`` keeps only records whose
``as_of`` is at or before it, which is the state at that moment in event time (the replay emits in
event-time order; a live log's late records count at their own time). The report, the dashboard
and the tests all compute figures here, so they cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.models import AlertRecord, CoverageRecord

GROUPINGS = ("county", "school_type", "school_code")


@dataclass
class CoverageCounts:
    on_roster: int = 0
    registered: int = 0
    covered: int = 0

    @property
    def rate(self) -> float | None:
        """Covered share of the students on rosters (None with no students)."""
        return self.covered / self.on_roster if self.on_roster else None

    def add(self, record: CoverageRecord) -> None:
        if record.on_roster:
            self.on_roster += 1
            self.registered += record.registered
            self.covered += record.covered


@dataclass
class Figures:
    pool: str
    coverage_year: int
    until: int | None = None
    coverage: dict[str, CoverageRecord] = field(default_factory=dict)  # person_key -> latest status
    alerts: dict[str, AlertRecord] = field(default_factory=dict)  # alert_id -> latest transition
    opened: dict[str, AlertRecord] = field(default_factory=dict)  # alert_id -> first OPEN (found)

    def add_coverage(self, record: CoverageRecord) -> None:
        if self._counts(record.pool, record.coverage_year, record.as_of):
            self.coverage[record.person_key] = record

    def add_alert(self, record: AlertRecord) -> None:
        if self._counts(record.pool, record.coverage_year, record.as_of):
            self.alerts[record.alert_id] = record
            if record.status == "OPEN":
                self.opened.setdefault(record.alert_id, record)

    def _counts(self, pool: str, year: int, as_of: int) -> bool:
        return pool == self.pool and year == self.coverage_year and (self.until is None or as_of <= self.until)

    def total(self) -> CoverageCounts:
        counts = CoverageCounts()
        for record in self.coverage.values():
            counts.add(record)
        return counts

    def by(self, grouping: str) -> dict[str, CoverageCounts]:
        """Counts per county, school type or school (only groups with students ever on a roster)."""
        if grouping not in GROUPINGS:
            raise ValueError(f"group by one of {GROUPINGS}")
        groups: dict[str, CoverageCounts] = {}
        for record in self.coverage.values():
            groups.setdefault(getattr(record, grouping), CoverageCounts()).add(record)
        return dict(sorted(groups.items()))

    def open_by_kind(self, county: str | None = None) -> Counter[str]:
        return Counter(
            a.kind for a in self.alerts.values() if a.status == "OPEN" and county in (None, a.details.county)
        )

    def found(self, kind: str, county: str | None = None) -> int:
        """Alerts of a kind opened at some point (by ``until``)."""
        return sum(1 for a in self.opened.values() if a.kind == kind and county in (None, a.details.county))

    def cleaned(self, kind: str, county: str | None = None) -> int:
        """Alerts of a kind found and now resolved."""
        return sum(
            1
            for alert_id, first in self.opened.items()
            if first.kind == kind and county in (None, first.details.county)
            and self.alerts[alert_id].status == "RESOLVED"
        )  # fmt: skip


def fold(
    pool: str,
    coverage_year: int,
    coverage: Iterable[CoverageRecord],
    alerts: Iterable[AlertRecord],
    until: int | None = None,
) -> Figures:
    """The figures after the given records (each stream in emission order), as of ``until``."""
    figures = Figures(pool, coverage_year, until)
    for record in coverage:
        figures.add_coverage(record)
    for alert in alerts:
        figures.add_alert(alert)
    return figures
