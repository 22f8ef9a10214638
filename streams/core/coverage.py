"""Coverage status of roster students: the facts behind the coverage figures (students on rosters,
registered, covered, per pool, county, school and school type and coverage year).

A pure function of the person's state, like the alerts, but independent of time: only a person's
own records change it. The engine compares it before and after each event and writes a
CoverageRecord for each status that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from schemas.models import CoverageRecord
from streams.core.policy import PolicyBook
from streams.core.rules import Cause, is_covered, latest_membership
from streams.core.state import Membership, PersonState

CoverageKey = tuple[int, str]  # (coverage year, roster pool)


class CoverageStatus(NamedTuple):
    county: str
    school_code: str
    school_type: str
    registered: bool
    covered: bool


def coverage_of(state: PersonState, policies: PolicyBook) -> dict[CoverageKey, CoverageStatus]:
    """For each pool the person is on a roster of, and each coverage year with a policy there."""
    latest: dict[str, Membership] = {}
    for membership in state.roster.values():
        if membership.enrolled:
            current = latest.get(membership.pool)
            if current is None or latest_membership(membership) > latest_membership(current):
                latest[membership.pool] = membership
    statuses: dict[CoverageKey, CoverageStatus] = {}
    for pool, membership in latest.items():
        for year in policies.years_of(pool):
            registrations = [r for r in state.registrations.values() if r.active and r.coverage_year == year]
            categories = tuple(sorted({h.category for h in state.hardship.values() if h.valid_in(year)}))
            net_by_pool: dict[str, int] = {}
            for payment in state.payments.values():
                if payment.coverage_year == year:
                    net_by_pool[payment.pool] = net_by_pool.get(payment.pool, 0) + payment.net_fen
            covered = is_covered(registrations, net_by_pool, _expected(policies, year, categories))
            statuses[(year, pool)] = CoverageStatus(
                membership.school_region, membership.school_code, membership.school_type, bool(registrations), covered
            )
    return statuses


def _expected(policies: PolicyBook, year: int, categories: tuple[str, ...]) -> Callable[[str], int | None]:
    return lambda pool: policies.expected_fen(pool, year, categories)


def coverage_changes(
    person_key: str,
    before: dict[CoverageKey, CoverageStatus],
    after: dict[CoverageKey, CoverageStatus],
    cause: Cause,
) -> list[CoverageRecord]:
    """A record for every status that appeared, changed or ended (left the roster), in key order."""
    records = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        status = new or old
        assert status is not None
        record = CoverageRecord(
            person_key=person_key, coverage_year=key[0], pool=key[1], county=status.county,
            school_code=status.school_code, school_type=status.school_type, on_roster=new is not None,
            registered=status.registered, covered=status.covered, as_of=cause.at, cause=cause.event_id,
        )  # fmt: skip
        records.append(record)
    return records
