"""The ground truth of a synthetic season, computed without the rules it checks.

Nothing here imports ``streams`` or ``connectors``: the alert identity, the expected contribution,
the coverage timeline and the continuity rules (lapsed years, repair payments, the waiting period)
are written again from the contract's own words, so a rule that drifts from the contract fails the
season tests instead of agreeing with itself.

A student's planned records are kept as plain tuples (``StudentHistory``), over one coverage year or
several. The profile that wrote them knows some alerts by construction (``known``); UNENROLLED and
UNPAID depend on timing -- when a registration or payment lands relative to each year's first
checkpoint -- and WAITING_PERIOD on the student's coverage over the years, so those are computed
here from the student's own records.
"""

from __future__ import annotations

import calendar
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from schemas.times import format_date

CST_OFFSET_MS = 8 * 3_600_000  # China Standard Time, the contract's clock
MS_PER_DAY = 86_400_000
END = 2**62  # after every record


class PlannedRegistration(NamedTuple):
    at: int
    ref: str
    insurance_type: str
    pool: str
    active: bool
    year: int


class PlannedPayment(NamedTuple):
    at: int
    ref: str
    fen: int
    pool: str
    paid: bool  # False: a refund of the payment with this ref
    year: int
    repair: bool = False  # purpose REPAIR


class PlannedStatus(NamedTuple):
    at: int
    category: str
    certified: bool
    valid_from_year: int  # the status is valid in the coverage years from this one on
    valid_to_year: int | None  # ... up to this one (None: open-ended)

    def valid_in(self, year: int) -> bool:
        return self.valid_from_year <= year and (self.valid_to_year is None or year <= self.valid_to_year)


@dataclass
class StudentHistory:
    """One student's records as planned, and the alerts the plan knows by construction."""

    key: str
    roster: list[tuple[int, bool]] = field(default_factory=list)
    registrations: list[PlannedRegistration] = field(default_factory=list)
    payments: list[PlannedPayment] = field(default_factory=list)
    statuses: list[PlannedStatus] = field(default_factory=list)
    known: dict[tuple[str, int, str], str] = field(default_factory=dict)  # (kind, year, discriminator) -> status


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


@dataclass(frozen=True)
class Continuity:
    """A year's continuity figures (the policy's ``[policy.continuity]``), as plain numbers."""

    counted_from: int
    months_per_lapsed_year: int
    long_lapse_years: int
    long_lapse_min_months: int


@dataclass(frozen=True)
class YearRules:
    """What the contract says about one coverage year of the pool, as the truth needs it."""

    year: int
    first_checkpoint: int  # the instant from which the first checkpoint has passed
    collection_end: int  # the last instant of the collection period
    contribution: Contribution
    waiting_period_months: int
    continuity: Continuity | None = None


class Waiting(NamedTuple):
    benefit_start: int  # local date, days since 1970-01-01
    lapsed_years: int | None
    repaired_years: int | None


def _local_day(ms: int) -> int:
    return (ms + CST_OFFSET_MS) // MS_PER_DAY


def _plus_months(days: int, months: int) -> int:
    """A local date plus whole months, the day clamped to the end of a shorter month."""
    start = date(1970, 1, 1) + timedelta(days=days)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    moved = date(year, month, min(start.day, calendar.monthrange(year, month)[1]))
    return (moved - date(1970, 1, 1)).days


def _first_of_year(year: int) -> int:
    return (date(year, 1, 1) - date(1970, 1, 1)).days


class SeasonTruth:
    """The expected final status of every alert of a season over one or more coverage years, student
    by student. ``rules`` has every year of the pool with a policy; other pools have none."""

    def __init__(self, pool: str, rules: Iterable[YearRules]) -> None:
        self.pool = pool
        self.rules = {year_rules.year: year_rules for year_rules in rules}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.continuity: Counter[int] = Counter()  # continuous covered years ending with the last year

    def lines(self, student: StudentHistory) -> list[dict[str, Any]]:
        """The ground-truth lines of one student, in (kind, year, discriminator) order."""
        alerts: dict[tuple[str, int, str], str] = {}
        waiting: dict[int, Waiting] = {}
        moments = sorted({at for at, _ in student.roster} | {r.at for r in student.registrations}
                         | {p.at for p in student.payments} | {s.at for s in student.statuses})  # fmt: skip
        for year in sorted(self.rules):
            alerts.update(self.roster_alerts(student, year))
            # Open at some time (after any of the student's records), and whether still at the end.
            held = [self.waiting_period(student, year, moment) for moment in moments]
            if any(held):
                alerts[("WAITING_PERIOD", year, self.pool)] = "OPEN" if held[-1] else "RESOLVED"
            if held and held[-1]:
                waiting[year] = held[-1]
        alerts.update(student.known)
        last = max(self.rules)
        if student.roster and student.roster[-1][1]:
            self.continuity[self.continuous_years(student, last)] += 1
        lines = []
        for (kind, year, discriminator), status in sorted(alerts.items()):
            self.counts[(kind, status)] += 1
            line: dict[str, Any] = {
                "alert_id": alert_id(kind, student.key, year, discriminator),
                "kind": kind,
                "status": status,
                "person_key": student.key,
                "coverage_year": year,
                "discriminator": discriminator,
            }
            if kind == "WAITING_PERIOD" and year in waiting:
                terms = waiting[year]
                line["benefit_start"] = format_date(terms.benefit_start)
                if terms.lapsed_years is not None:
                    line["lapsed_years"], line["repaired_years"] = terms.lapsed_years, terms.repaired_years
            lines.append(line)
        return lines

    # -- roster alerts --------------------------------------------------------------------------------

    def roster_alerts(self, student: StudentHistory, year: int) -> dict[tuple[str, int, str], str]:
        """UNENROLLED / UNPAID of a year from the coverage timeline at its first checkpoint and every
        later change, for a student who joined the roster by 31 Dec of the year."""
        rules = self.rules[year]
        joined = min((at for at, enrolled in student.roster if enrolled), default=None)
        year_end = (_first_of_year(year + 1)) * MS_PER_DAY - CST_OFFSET_MS - 1
        if joined is None or joined > year_end:
            return {}
        changes = sorted(
            {at for at, _ in student.roster}
            | {r.at for r in student.registrations}
            | {p.at for p in student.payments}
            | {s.at for s in student.statuses}
        )
        moments = [rules.first_checkpoint] + [at for at in changes if at > rules.first_checkpoint]
        unenrolled: list[bool] = []
        unpaid: list[bool] = []
        for moment in moments:
            on_roster, registered, resident, covered = self.coverage_at(student, moment, year)
            unenrolled.append(on_roster and not registered)
            unpaid.append(on_roster and resident and not covered)
        found: dict[tuple[str, int, str], str] = {}
        for kind, flags in (("UNENROLLED", unenrolled), ("UNPAID", unpaid)):
            if any(flags):
                found[(kind, year, self.pool)] = "OPEN" if flags[-1] else "RESOLVED"
        return found

    def coverage_at(self, student: StudentHistory, moment: int, year: int) -> tuple[bool, bool, bool, bool]:
        """(on the roster, registered, holding a resident registration, covered) for ``year`` at ``moment``."""
        roster = [enrolled for at, enrolled in sorted(student.roster) if at <= moment]
        on_roster = bool(roster) and roster[-1]
        latest: dict[str, PlannedRegistration] = {}
        for registration in sorted(student.registrations):
            if registration.at <= moment and registration.year == year:
                latest[registration.ref] = registration
        active = [r for r in latest.values() if r.active]
        categories = [s.category for s in student.statuses if s.at <= moment and s.certified and s.valid_in(year)]
        paid: Counter[str] = Counter()
        for payment in student.payments:
            if payment.at <= moment and payment.year == year and not payment.repair:
                paid[payment.pool] += payment.fen if payment.paid else -payment.fen
        resident_pools = [r.pool for r in active if r.insurance_type == "RESIDENT"]
        covered = any(r.insurance_type == "EMPLOYEE" for r in active) or any(
            self._paid_enough(pool, year, paid[pool], categories) for pool in resident_pools
        )
        return on_roster, bool(active), bool(resident_pools), covered

    def _paid_enough(self, pool: str, year: int, paid: int, categories: list[str]) -> bool:
        """A resident registration in a pool without a policy for the year counts as covered."""
        rules = self.rules.get(year) if pool == self.pool else None
        return rules is None or paid >= rules.contribution.owed(categories)

    # -- over the years -------------------------------------------------------------------------------

    def covered(self, student: StudentHistory, year: int, moment: int = END) -> bool:
        """Covered for ``year`` by the student's records up to ``moment`` (any pool)."""
        return self.coverage_at(student, moment, year)[3]

    def _years(self, student: StudentHistory, moment: int) -> set[int]:
        return {r.year for r in student.registrations if r.at <= moment}

    def continuous_years(self, student: StudentHistory, year: int) -> int:
        count = 0
        while self.covered(student, year - count):
            count += 1
        return count

    def lapsed_years(self, student: StudentHistory, year: int, counted_from: int, moment: int = END) -> int:
        """Uncovered years before ``year`` back to the last covered one, none before ``counted_from``."""
        years = self._years(student, moment)
        last = max((y for y in years if y < year and self.covered(student, y, moment)), default=None)
        return 0 if last is None else max(0, year - 1 - max(last, counted_from - 1))

    def waiting_period(self, student: StudentHistory, year: int, moment: int = END) -> Waiting | None:
        """The waiting period in the pool for ``year`` by the student's records up to ``moment``, if any."""
        rules = self.rules[year]
        if any(s.certified and s.valid_in(year) and s.at <= moment for s in student.statuses):
            return None  # hardship: no waiting period
        latest: dict[str, PlannedRegistration] = {}
        for registration in sorted(student.registrations):
            if registration.year == year and registration.at <= moment:
                latest[registration.ref] = registration
        active = [r for r in latest.values() if r.active]
        if any(r.insurance_type == "EMPLOYEE" for r in active) or not any(r.pool == self.pool for r in active):
            return None
        owed = rules.contribution.owed([])
        covering = self._covering(student, year, owed, moment)
        if covering is None:
            return None
        continuity = rules.continuity
        if continuity is None:
            if covering <= rules.collection_end:
                return None
            return Waiting(_plus_months(_local_day(covering), rules.waiting_period_months), None, None)
        lapsed = self.lapsed_years(student, year, continuity.counted_from, moment)
        if covering <= rules.collection_end and lapsed == 0:
            return None
        repair_fen = sum(
            (p.fen if p.paid else -p.fen)
            for p in student.payments
            if p.repair and p.year == year and p.pool == self.pool and p.at <= moment
        )
        repaired = max(0, repair_fen) // rules.contribution.full_fen
        months = rules.waiting_period_months + continuity.months_per_lapsed_year * max(0, lapsed - repaired)
        if lapsed >= continuity.long_lapse_years:
            months = max(months, continuity.long_lapse_min_months)
        start = max(_first_of_year(year), _local_day(covering))
        return Waiting(_plus_months(start, months), lapsed, repaired)

    def _covering(self, student: StudentHistory, year: int, owed: int, moment: int) -> int | None:
        """The time of the contribution that (last) brought the net paid in the pool up to ``owed``,
        payments and refunds taken in time order."""
        if owed <= 0:
            return None
        moves = sorted(
            (p.at, 0 if p.paid else 1, p.ref, p.fen)
            for p in student.payments
            if p.year == year and p.pool == self.pool and not p.repair and p.at <= moment
        )
        paid: dict[str, int] = {}
        refunded: dict[str, int] = {}
        net, covering = 0, None
        for at, is_refund, ref, fen in moves:
            before = max(0, paid.get(ref, 0) - refunded.get(ref, 0))
            (refunded if is_refund else paid)[ref] = fen
            after = max(0, paid.get(ref, 0) - refunded.get(ref, 0))
            if not is_refund and net < owed <= net - before + after:
                covering = at
            net += after - before
        return covering
