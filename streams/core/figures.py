"""Coverage and alert figures of one pool and coverage year, folded from the engine's output.

The input is what the engine writes -- coverage status changes and alert transitions -- in emission
order (per person), from a replay, from the topics or from the sink's history. Figures as of a date
count by business time (SPEC section 4): ``until`` keeps, per person or alert, the last record
written whose ``as_of`` is at or before it. The engine writes coverage records so that this is the
status as of ``until`` whatever order the agencies delivered in (streams.core.coverage). An alert
counts where its latest record by ``until`` puts it (its pool and county follow the student), so
records of every pool are taken and the pool is applied last. The report, the dashboard and the
tests all compute figures here, so they cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.models import AlertRecord, CoverageRecord

GROUPINGS = ("county", "school_type", "school_code")
# Covered students by consecutive covered years ending with the year: the continuity incentives start
# at four years, so the counts stop there.
CONTINUITY = ("1", "2", "3", "4+")


def continuity_bucket(years: int | None) -> str | None:
    """1, 2, 3 or 4+ consecutive covered years; None when unknown (a record from before
    ``continuous_years``) or not covered."""
    if not years:
        return None
    return CONTINUITY[min(years, 4) - 1]


@dataclass
class CoverageCounts:
    on_roster: int = 0
    registered: int = 0
    covered: int = 0
    continuous: Counter[str] = field(default_factory=Counter)  # covered students by CONTINUITY bucket

    @property
    def rate(self) -> float | None:
        """Covered share of the students on rosters (None with no students)."""
        return self.covered / self.on_roster if self.on_roster else None

    def add(self, record: CoverageRecord) -> None:
        if record.on_roster:
            self.on_roster += 1
            self.registered += record.registered
            self.covered += record.covered
            bucket = continuity_bucket(record.continuous_years) if record.covered else None
            if bucket is not None:
                self.continuous[bucket] += 1


@dataclass
class Figures:
    pool: str
    coverage_year: int
    until: int | None = None
    coverage: dict[str, CoverageRecord] = field(default_factory=dict)  # person_key -> latest status
    history: dict[str, list[AlertRecord]] = field(default_factory=dict)  # alert_id -> its records, any pool

    def add_coverage(self, record: CoverageRecord) -> None:
        if record.pool == self.pool and self._counts(record.coverage_year, record.as_of):
            self.coverage[record.person_key] = record

    def add_alert(self, record: AlertRecord) -> None:
        if self._counts(record.coverage_year, record.as_of):
            self.history.setdefault(record.alert_id, []).append(record)

    def _counts(self, year: int, as_of: int) -> bool:
        return year == self.coverage_year and (self.until is None or as_of <= self.until)

    @property
    def alerts(self) -> dict[str, AlertRecord]:
        """alert_id -> latest transition, of the alerts that transition attributes to this pool."""
        return {alert_id: records[-1] for alert_id, records in self.history.items() if records[-1].pool == self.pool}

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

    def waiting(self, county: str | None = None) -> tuple[int, int]:
        """Students with an open waiting period, and of those the ones after a lapse (continuity rules)."""
        waiting = [
            a
            for a in self.alerts.values()
            if a.kind == "WAITING_PERIOD" and a.status == "OPEN" and county in (None, a.details.county)
        ]
        return len(waiting), sum(1 for a in waiting if a.details.lapsed_years)

    def found(self, kind: str, county: str | None = None) -> int:
        """Alerts of a kind open at some time by ``until``, counted where they are attributed now."""
        return sum(1 for alert in self._found(kind, county))

    def cleaned(self, kind: str, county: str | None = None) -> int:
        """Alerts of a kind found and now resolved."""
        return sum(1 for alert in self._found(kind, county) if alert.status == "RESOLVED")

    def _found(self, kind: str, county: str | None) -> Iterable[AlertRecord]:
        for records in self.history.values():
            alert = records[-1]
            if (
                alert.kind == kind
                and alert.pool == self.pool
                and county in (None, alert.details.county)
                and was_open(records)
            ):
                yield alert


def was_open(records: list[AlertRecord]) -> bool:
    """Whether an alert was open at some business time, from its records in writing order.

    At time T an alert is what the last record written with ``as_of`` at or before T says. A record
    says something at its own time unless a record written after it has an ``as_of`` at or before
    its own: a late record that, in business time, resolved it before it opened (it never was open)."""
    earliest_later: int | None = None
    for record in reversed(records):
        if record.status == "OPEN" and (earliest_later is None or record.as_of < earliest_later):
            return True
        earliest_later = record.as_of if earliest_later is None else min(earliest_later, record.as_of)
    return False


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
