"""Coverage status of roster students: the facts behind the coverage figures (students on rosters,
registered, covered, per pool, county, school and school type and coverage year).

A pure function of the person's state, like the alerts, but independent of the clock: only a
person's own records change it. Figures as of a date count by business time (SPEC section 4), so a
record's ``as_of`` is the business time from which its status holds, and a record that arrives out
of business-time order (a late delivery, an earlier version of a lifecycle) also corrects the
statuses after its own time. The engine takes the status timeline before and after each event, from
the event's ``occurred_at`` on, and writes a CoverageRecord wherever a reader who keeps, per person,
the last record written with ``as_of`` at or before a date would otherwise see the wrong status at
that date. Delivered in business-time order, that is one record per status that changed, at the
event's own time.
"""

from __future__ import annotations

from typing import NamedTuple

from schemas.codec import trusted_record
from schemas.models import CoverageRecord
from schemas.times import end_of_local_day, year_bounds
from streams.core.policy import PolicyBook
from streams.core.rules import Cause, continuous_years, coverage_by_year, latest_membership
from streams.core.state import Membership, PersonState

CoverageKey = tuple[int, str]  # (coverage year, roster pool)


class CoverageStatus(NamedTuple):
    county: str
    school_code: str
    school_type: str
    registered: bool
    covered: bool
    school_name: str | None
    continuous_years: int | None


# The statuses at ``start`` and at every later business time where they can change.
Timeline = list[tuple[int, dict[CoverageKey, CoverageStatus]]]


def coverage_of(state: PersonState, policies: PolicyBook) -> dict[CoverageKey, CoverageStatus]:
    """For each pool the person is on a roster of, and each coverage year with a policy there that the
    student joined the roster by 31 Dec of (and that the state has not forgotten)."""
    members: dict[str, list[Membership]] = {}
    for membership in state.roster.values():
        if membership.enrolled:
            members.setdefault(membership.pool, []).append(membership)
    if not members:
        return {}
    covered = coverage_by_year(state, policies)
    registered = {r.coverage_year for r in state.registrations.values() if r.active}
    statuses: dict[CoverageKey, CoverageStatus] = {}
    for pool, memberships in members.items():
        for year in policies.years_of(pool):
            year_end = end_of_local_day(year_bounds(year)[1])
            joined = [m for m in memberships if m.occurred_at <= year_end]
            if not joined or not state.kept(year):
                continue
            membership = max(joined, key=latest_membership)
            statuses[(year, pool)] = CoverageStatus(
                membership.school_region, membership.school_code, membership.school_type, year in registered,
                covered.get(year, False), membership.school_name, continuous_years(covered, state.past, year),
            )  # fmt: skip
    return statuses


def coverage_timeline(state: PersonState, policies: PolicyBook, start: int) -> Timeline:
    """The person's statuses as of ``start`` and as of each later business time at which they can change."""
    return [(moment, coverage_of(state.at(moment), policies)) for moment in state.times_from(start)]


def coverage_changes(
    person_key: str, before: Timeline, state: PersonState, policies: PolicyBook, cause: Cause
) -> list[CoverageRecord]:
    """The records that bring a reader from the timeline ``before`` an event to the state after it, in
    key order, each key's in business-time order."""
    after = [coverage_of(state.at(moment), policies) for moment, _ in before]
    keys: set[CoverageKey] = set()
    for (_, old), new in zip(before, after, strict=True):
        keys.update(old, new)
    records = []
    for key in sorted(keys):
        shown: CoverageStatus | None = None
        written = False
        for (moment, old), new in zip(before, after, strict=True):
            seen = shown if written else old.get(key)  # what a reader sees at ``moment`` without a new record
            status = new.get(key)
            if status == seen:
                continue
            last = status or seen
            assert last is not None
            records.append(
                trusted_record(
                    CoverageRecord,
                    person_key=person_key,
                    coverage_year=key[0],
                    pool=key[1],
                    county=last.county,
                    school_code=last.school_code,
                    school_type=last.school_type,
                    on_roster=status is not None,
                    registered=last.registered,
                    covered=last.covered,
                    as_of=moment,
                    cause=cause.event_id,
                    school_name=last.school_name,
                    continuous_years=last.continuous_years,
                )
            )
            shown, written = status, True
    return records
