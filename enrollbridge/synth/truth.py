"""The ground truth of a synthetic season, computed without the rules it checks.

Nothing here imports ``streams``: the alert identity, the expected contribution and the coverage
timeline are written again from the contract's own words, so a rule that drifts from the contract
fails the season tests instead of agreeing with itself.

A student's planned records are kept as plain tuples (``StudentHistory``). The profile that wrote
them knows some alerts by construction (``known``); UNENROLLED and UNPAID depend on timing -- when a
registration or payment lands relative to the first checkpoint -- and are computed here from the
coverage timeline of the student's own records.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from schemas.times import format_date


class PlannedRegistration(NamedTuple):
    at: int
    ref: str
    insurance_type: str
    pool: str
    active: bool


class PlannedPayment(NamedTuple):
    at: int
    ref: str
    fen: int
    pool: str
    paid: bool


class PlannedStatus(NamedTuple):
    at: int
    category: str
    certified: bool


@dataclass
class StudentHistory:
    """One student's records as planned, and the alerts the plan knows by construction."""

    key: str
    roster: list[tuple[int, bool]] = field(default_factory=list)
    registrations: list[PlannedRegistration] = field(default_factory=list)
    payments: list[PlannedPayment] = field(default_factory=list)
    statuses: list[PlannedStatus] = field(default_factory=list)
    known: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, discriminator) -> final status
    benefit_start: int | None = None


def alert_id(kind: str, person_key: str, coverage_year: int, discriminator: str) -> str:
    """The contract's alert identity: SHA-256 of ``kind|person_key|coverage_year|discriminator``, hex."""
    return hashlib.sha256(f"{kind}|{person_key}|{coverage_year}|{discriminator}".encode()).hexdigest()


@dataclass(frozen=True)
class Contribution:
    """What a pool charges for the year: the full contribution and the subsidy share per category."""

    full_fen: int
    subsidy: Mapping[str, float]

    def owed(self, categories: Iterable[str]) -> int:
        """The contribution less the highest subsidy share among the categories, rounded half up to the fen."""
        share = max((self.subsidy.get(category, 0.0) for category in categories), default=0.0)
        exact = Decimal(self.full_fen) * (Decimal(1) - Decimal(str(share)))
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class SeasonTruth:
    """The expected final status of every alert of a season, student by student."""

    def __init__(self, pool: str, year: int, first_checkpoint: int, contribution: Contribution) -> None:
        self.pool = pool
        self.year = year
        self.first_checkpoint = first_checkpoint
        self.contribution = contribution
        self.counts: Counter[tuple[str, str]] = Counter()

    def lines(self, student: StudentHistory) -> list[dict[str, Any]]:
        """The ground-truth lines of one student, in (kind, discriminator) order."""
        alerts = {**self.roster_alerts(student), **student.known}
        lines = []
        for (kind, discriminator), status in sorted(alerts.items()):
            self.counts[(kind, status)] += 1
            line: dict[str, Any] = {
                "alert_id": alert_id(kind, student.key, self.year, discriminator),
                "kind": kind,
                "status": status,
                "person_key": student.key,
                "coverage_year": self.year,
                "discriminator": discriminator,
            }
            if kind == "WAITING_PERIOD" and student.benefit_start is not None:
                line["benefit_start"] = format_date(student.benefit_start)
            lines.append(line)
        return lines

    def roster_alerts(self, student: StudentHistory) -> dict[tuple[str, str], str]:
        """UNENROLLED / UNPAID from the coverage timeline at the first checkpoint and every later change."""
        changes = sorted(
            {at for at, _ in student.roster}
            | {r.at for r in student.registrations}
            | {p.at for p in student.payments}
            | {s.at for s in student.statuses}
        )
        moments = [self.first_checkpoint] + [at for at in changes if at > self.first_checkpoint]
        unenrolled: list[bool] = []
        unpaid: list[bool] = []
        for moment in moments:
            on_roster, registered, resident, covered = self.coverage_at(student, moment)
            unenrolled.append(on_roster and not registered)
            unpaid.append(on_roster and resident and not covered)
        found: dict[tuple[str, str], str] = {}
        for kind, flags in (("UNENROLLED", unenrolled), ("UNPAID", unpaid)):
            if any(flags):
                found[(kind, self.pool)] = "OPEN" if flags[-1] else "RESOLVED"
        return found

    def coverage_at(self, student: StudentHistory, moment: int) -> tuple[bool, bool, bool, bool]:
        """(on the roster, registered, holding a resident registration, covered) at ``moment``."""
        roster = [enrolled for at, enrolled in sorted(student.roster) if at <= moment]
        on_roster = bool(roster) and roster[-1]
        latest: dict[str, PlannedRegistration] = {}
        for registration in sorted(student.registrations):
            if registration.at <= moment:
                latest[registration.ref] = registration
        active = [r for r in latest.values() if r.active]
        categories = [s.category for s in student.statuses if s.at <= moment and s.certified]
        owed = self.contribution.owed(categories)
        paid: Counter[str] = Counter()
        for payment in student.payments:
            if payment.at <= moment:
                paid[payment.pool] += payment.fen if payment.paid else -payment.fen
        resident_pools = [r.pool for r in active if r.insurance_type == "RESIDENT"]
        covered = any(r.insurance_type == "EMPLOYEE" for r in active) or any(
            pool != self.pool or paid[pool] >= owed for pool in resident_pools
        )
        return on_roster, bool(active), bool(resident_pools), covered
