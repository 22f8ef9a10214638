"""The rules of SPEC section 6 as a pure function of one person's state and the clock.

``evaluate`` derives which alerts should be open now, compares that with the alerts the state
records as open, and returns one AlertRecord per transition (RESOLVED first, then OPEN, each in a
fixed order). No I/O, no wall clock, no randomness: the same state, time and cause give the same
records, byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from schemas.codec import trusted_record
from schemas.models import AlertDetails, AlertKind, AlertRecord, RegistrationRef
from schemas.regions import pool_of
from schemas.times import add_months, end_of_local_day, local_day, year_bounds
from streams.core.policy import Policy, PolicyBook
from streams.core.state import (
    AlertKey,
    HardshipStatus,
    Membership,
    OpenAlert,
    PastYears,
    Payment,
    PersonState,
    Registration,
)

# The alert kinds of SPEC section 6 as the contract's enum lists them, which is also the order in
# which one event's transitions are emitted.
KIND_ORDER: tuple[str, ...] = tuple(kind.value for kind in AlertKind)
UNENROLLED, UNPAID, DUPLICATE_ENROLLMENT, HARDSHIP_WRONG_PLACE, OVERPAID, PAID_UNREGISTERED, WAITING_PERIOD = KIND_ORDER
_KIND_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}
SEVERITY = {
    UNENROLLED: "MEDIUM",
    UNPAID: "MEDIUM",
    DUPLICATE_ENROLLMENT: "HIGH",
    HARDSHIP_WRONG_PLACE: "HIGH",
    OVERPAID: "HIGH",
    PAID_UNREGISTERED: "HIGH",
    WAITING_PERIOD: "INFO",
}


class Cause(NamedTuple):
    """The event or tick being processed: its id, its time (the alert's ``as_of``) and, for a tick, the
    gating sources that were not complete up to its time (sorted)."""

    event_id: str
    at: int
    incomplete: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """An alert that should be open, with what its OPEN record shows."""

    pool: str
    county: str
    evidence: tuple[str, ...]
    membership: Membership | None = None
    expected_fen: int | None = None
    paid_fen: int | None = None
    benefit_start: int | None = None
    registrations: tuple[Registration, ...] = ()
    payment_refs: tuple[str, ...] = ()
    approval_pools: tuple[str, ...] = ()
    lapsed_years: int | None = None  # WAITING_PERIOD under continuity rules
    repaired_years: int | None = None

    def attribution(self) -> OpenAlert:
        """Who must act on the alert -- its pool, county and school -- and, for a waiting period under
        continuity rules, its terms: what an OPEN record is written again for when it changes."""
        terms = (self.benefit_start, self.lapsed_years, self.repaired_years) if self.lapsed_years is not None else ()
        membership = self.membership
        if membership is None:
            return OpenAlert(self.pool, self.county, None, None, None, None, *terms)
        return OpenAlert(
            self.pool, self.county, membership.school_code, membership.school_type, membership.student_ref,
            membership.school_name, *terms,
        )  # fmt: skip


def alert_id(kind: str, person_key: str, coverage_year: int, discriminator: str) -> str:
    return hashlib.sha256(f"{kind}|{person_key}|{coverage_year}|{discriminator}".encode()).hexdigest()


def evaluate(
    person_key: str, state: PersonState, now: int | None, policies: PolicyBook, cause: Cause
) -> list[AlertRecord]:
    """Bring the state's open alerts in line with the rules; return the transitions, in order.

    ``now`` is the time of the latest tick (None before the first): rules that wait for time
    compare against it, never against the wall clock.

    A transition's ``as_of`` is the business time it took effect: the cause's time, unless the
    person's records already hold versions that happened later (they were delivered first: the
    roster before the registrations, an agency ahead of another). Then the rules are also read as of
    each later business time of those records, and a transition takes effect from the point after
    which it holds to the end; an alert that stays open is written as filed at that point and again
    wherever it moved since. Figures as of any date then count it where it was.
    """
    found = derive(state, now, policies)
    open_alerts = state.open_alerts
    resolved = [key for key in open_alerts if key not in found]
    # Opened, or still open with another attribution (the student moved, or their roster entry came).
    opened = [key for key, finding in found.items() if open_alerts.get(key) != finding.attribution()]
    if len(resolved) > 1:
        resolved.sort(key=_order)
    if len(opened) > 1:
        opened.sort(key=_order)
    # Whether the person's records hold versions later than the cause (delivered ahead of it); asked only
    # when there is something it could change, since it reads every version.
    in_order = not (state.closed_alerts or resolved or opened) or state.at(cause.at) is state
    records: list[AlertRecord] = []
    if state.closed_alerts and not in_order:
        records = _refile_closed(person_key, state, found, now, policies, cause)
    if not resolved and not opened:
        return records
    timeline = [(cause.at, found)]
    if not in_order:
        timeline = [(moment, derive(state.at(moment), now, policies)) for moment in state.times_from(cause.at)]
    for key in resolved:
        ended = _from(timeline, key, holds=False)
        filed = state.open_alerts.pop(key)
        if not in_order:  # filed where the student was just before it ended, not where they went since
            just_before = derive(state.at(ended - 1), now, policies).get(key)
            filed = just_before.attribution() if just_before else filed
        records.append(_resolved_record(person_key, state, key, filed, cause, ended))
        state.closed_alerts[key] = (ended, filed)
    for key in opened:
        state.closed_alerts.pop(key, None)
        state.open_alerts[key] = found[key].attribution()
        records.extend(_open_stretches(person_key, state, key, timeline, cause))
    return records


def _open_stretches(
    person_key: str,
    state: PersonState,
    key: AlertKey,
    timeline: list[tuple[int, dict[AlertKey, Finding]]],
    cause: Cause,
) -> list[AlertRecord]:
    """The OPEN records of an alert from the business time it holds to the timeline's end: one where
    it starts, and one more wherever its filing changes (the student moved)."""
    records: list[AlertRecord] = []
    shown: OpenAlert | None = None
    since = _from(timeline, key, holds=True)
    for moment, findings in timeline:
        if moment < since:
            continue
        finding = findings[key]
        if finding.attribution() != shown:
            shown = finding.attribution()
            records.append(_open_record(person_key, state, key, finding, cause, moment))
    return records


def _refile_closed(
    person_key: str,
    state: PersonState,
    found: dict[AlertKey, Finding],
    now: int | None,
    policies: PolicyBook,
    cause: Cause,
) -> list[AlertRecord]:
    """Resolved alerts filed where the student was not, as records delivered late now show (the roster
    entry came after the alert was resolved): written again, OPEN from when it held with the filing of
    each stretch, then RESOLVED where it ended, at the same business times as before."""
    records: list[AlertRecord] = []
    for key in sorted(state.closed_alerts, key=_order):
        ended, filed = state.closed_alerts[key]
        if key in found:
            continue  # open again: evaluate writes it
        just_before = derive(state.at(ended - 1), now, policies).get(key)
        if just_before is None or just_before.attribution() == filed:
            continue
        moments = [moment for moment in state.times_from(0) if moment < ended]
        timeline = [(moment, derive(state.at(moment), now, policies)) for moment in moments]
        records.extend(_open_stretches(person_key, state, key, timeline, cause))
        refiled = just_before.attribution()
        records.append(_resolved_record(person_key, state, key, refiled, cause, ended))
        state.closed_alerts[key] = (ended, refiled)
    return records


def _from(timeline: list[tuple[int, dict[AlertKey, Finding]]], key: AlertKey, holds: bool) -> int:
    """The first business time of the timeline from which ``key`` is found (or not) to its end."""
    start = timeline[0][0]
    for moment, findings in reversed(timeline):
        if (key in findings) != holds:
            break
        start = moment
    return start


def derive(state: PersonState, now: int | None, policies: PolicyBook) -> dict[AlertKey, Finding]:
    """Every alert that should be open for this person at time ``now`` (the latest tick)."""
    # One pass over each kind of record, bucketed by coverage year (and pool). This runs on every
    # event and every tick a person is evaluated at: the loops read the records' fields directly.
    roster_by_pool: dict[str, list[Membership]] = {}
    for membership in state.roster.values():
        if membership.enrolled:
            roster_by_pool.setdefault(pool_of(membership.school_region), []).append(membership)
    registrations_by_year: dict[int, list[Registration]] = {}
    for registration in state.registrations.values():
        if registration.active:
            registrations_by_year.setdefault(registration.coverage_year, []).append(registration)
    payments_by_year: dict[int, dict[str, list[Payment]]] = {}
    for payment in state.payments.values():
        basis = payment.paid or payment.refunded
        assert basis is not None  # a Payment is only created from one of its parts
        by_pool = payments_by_year.setdefault(basis.coverage_year, {})
        by_pool.setdefault(pool_of(basis.region), []).append(payment)
    years = {*registrations_by_year, *payments_by_year}
    for key in state.open_alerts:
        years.add(key[1])
    for pool in roster_by_pool:
        years.update(policies.years_of(pool))
    history = History(state, policies)
    found: dict[AlertKey, Finding] = {}
    hardship = state.hardship
    for year in sorted(years) if len(years) > 1 else years:
        if not state.kept(year):
            continue  # forgotten: its alerts stay as last written
        registrations = registrations_by_year.get(year, [])
        if len(registrations) > 1:
            registrations.sort(key=_by_ref)
        statuses = [h for h in hardship.values() if h.valid_in(year)] if hardship else []
        if len(statuses) > 1:
            statuses.sort(key=lambda h: h.status_ref)
        _derive_year(
            year, now, policies, roster_by_pool, registrations, statuses, payments_by_year.get(year, {}),
            history, found,
        )  # fmt: skip
    return found


def _by_ref(registration: Registration) -> str:
    return registration.enrollment_ref


def _derive_year(
    year: int,
    now: int | None,
    policies: PolicyBook,
    roster_by_pool: dict[str, list[Membership]],
    registrations: list[Registration],
    statuses: list[HardshipStatus],
    payments_by_pool: dict[str, list[Payment]],
    history: History,
    found: dict[AlertKey, Finding],
) -> None:
    residents = [r for r in registrations if r.insurance_type == "RESIDENT"]
    employee = len(residents) < len(registrations)
    categories = tuple(sorted({status.category for status in statuses})) if statuses else ()
    # Repair payments never count toward being covered or overpaid (SPEC section 6).
    contributions_by_pool: dict[str, list[Payment]] = {}
    net_by_pool: dict[str, int] = {}
    for pool, payments in payments_by_pool.items():
        if len(payments) > 1:
            payments.sort(key=lambda p: (p.basis.occurred_at, p.payment_ref))
        contributions = [p for p in payments if not p.is_repair]
        if contributions:
            contributions_by_pool[pool] = contributions
            net_by_pool[pool] = sum(p.net_fen for p in contributions)

    def expected(pool: str) -> int | None:
        return policies.expected_fen(pool, year, categories)

    covered = is_covered(registrations, net_by_pool, expected) if registrations else False

    # Students on a roster of a pool whose first checkpoint has passed, who joined it by 31 Dec of the
    # year: enrolled, and covered?
    if now is not None and (not registrations or not covered):
        year_end = end_of_local_day(year_bounds(year)[1])
        for pool, members in roster_by_pool.items():
            policy = policies.get(pool, year)
            if policy is None or now < policy.first_checkpoint_passes_at:
                continue
            memberships = [m for m in members if m.occurred_at <= year_end]
            if not memberships:
                continue
            membership = memberships[0] if len(memberships) == 1 else max(memberships, key=latest_membership)
            roster_ids = tuple(m.event_id for m in memberships)
            if not registrations:
                found[(UNENROLLED, year, pool)] = Finding(
                    pool, membership.school_region, roster_ids, membership=membership
                )
            elif residents:
                pay_pool = residents[0].pool
                payment_ids = tuple(i for p in contributions_by_pool.get(pay_pool, ()) for i in p.event_ids())
                found[(UNPAID, year, pool)] = Finding(
                    pool,
                    membership.school_region,
                    roster_ids + tuple(r.event_id for r in residents) + payment_ids,
                    membership=membership,
                    expected_fen=expected(pay_pool),
                    paid_fen=net_by_pool.get(pay_pool, 0),
                    registrations=tuple(residents),
                )

    # The student's roster entries, for the alerts attributed to their latest one.
    enrolled = [m for members in roster_by_pool.values() for m in members] if len(registrations) > 1 or statuses else []
    if len(registrations) >= 2:
        pool, county, attributed = _attribution(enrolled, registrations)
        found[(DUPLICATE_ENROLLMENT, year, "")] = Finding(
            pool, county, tuple(r.event_id for r in registrations), membership=attributed,
            registrations=tuple(registrations),
        )  # fmt: skip

    if statuses:
        approval_pools = tuple(sorted({status.approval_pool for status in statuses}))
        misplaced = tuple(r for r in residents if r.pool not in approval_pools)
        if misplaced:
            pool, county, attributed = _attribution(enrolled, registrations)
            found[(HARDSHIP_WRONG_PLACE, year, "")] = Finding(
                pool, county, tuple(s.event_id for s in statuses) + tuple(r.event_id for r in misplaced),
                membership=attributed, registrations=misplaced, approval_pools=approval_pools,
            )  # fmt: skip

    for pool, payments in contributions_by_pool.items():
        net = net_by_pool[pool]
        owed = expected(pool)
        county = payments[0].basis.region
        if owed is not None and net > owed:
            found[(OVERPAID, year, pool)] = Finding(
                pool, county, tuple(i for p in payments for i in p.event_ids()), expected_fen=owed, paid_fen=net,
                payment_refs=tuple(p.payment_ref for p in payments),
            )  # fmt: skip
        # Grace days are measured on the clock: a change of the payer opens it only once a tick has
        # passed the due time, so the watermark clock keeps an agency delivering first from raising it.
        if now is not None and not any(r.pool == pool for r in registrations):
            grace = policies.grace_ms(pool, year)
            due = [p for p in payments if p.paid and p.net_fen > 0 and p.paid.occurred_at + grace <= now]
            if due:
                found[(PAID_UNREGISTERED, year, pool)] = Finding(
                    pool, county, tuple(i for p in due for i in p.event_ids()), paid_fen=net,
                    payment_refs=tuple(p.payment_ref for p in due),
                )  # fmt: skip
        if statuses or employee or owed is None:
            continue
        policy = policies.get(pool, year)
        registered = next((r for r in residents if r.pool == pool), None)
        late = covering_payment(payments, owed)
        if policy is None or registered is None or late is None or late.paid is None:
            continue
        waiting = _waiting_period(policy, year, registered, late, payments_by_pool[pool], history, owed=owed, paid=net)
        if waiting is not None:
            found[(WAITING_PERIOD, year, pool)] = waiting


def grace_ended_unregistered(state: PersonState, now: int | None, policies: PolicyBook) -> bool:
    """Whether ``now`` is past the grace period of a payment in a pool where the person holds no
    registration for its year, and its PAID_UNREGISTERED alert is not open: the one finding that a
    payment's due time can change since the person was last evaluated (the others that wait for
    time wait for a first checkpoint, whose tick evaluates every roster student)."""
    if now is None:
        return False
    for payment in state.payments.values():
        paid = payment.paid
        if paid is None or payment.net_fen <= 0 or paid.occurred_at > now:
            continue
        year, pool = paid.coverage_year, pool_of(paid.region)
        if not state.kept(year) or (PAID_UNREGISTERED, year, pool) in state.open_alerts:
            continue
        if paid.occurred_at + policies.grace_ms(pool, year) > now:
            continue
        if not any(r.active and r.coverage_year == year and r.pool == pool for r in state.registrations.values()):
            return True
    return False


def _waiting_period(
    policy: Policy,
    year: int,
    registered: Registration,
    covering: Payment,
    payments: list[Payment],
    history: History,
    owed: int,
    paid: int,
) -> Finding | None:
    """The waiting period of a person covered in the pool by ``covering`` (SPEC section 6): without
    continuity rules only after a payment after the collection period; with them also after a lapse,
    longer by the lapsed years that repair payments did not make good."""
    assert covering.paid is not None
    paid_at = covering.paid.occurred_at
    evidence: tuple[str, ...] = (registered.event_id, covering.paid.event_id)
    rules = policy.continuity
    if rules is None:
        if paid_at <= policy.collection_end_at:
            return None
        return Finding(
            policy.pool, covering.paid.region, evidence, expected_fen=owed, paid_fen=paid,
            benefit_start=add_months(local_day(paid_at), policy.waiting_period_months),
            registrations=(registered,), payment_refs=(covering.payment_ref,),
        )  # fmt: skip
    lapsed = history.lapsed_years(year, rules.counted_from)
    if paid_at <= policy.collection_end_at and lapsed == 0:
        return None
    repairs = [p for p in payments if p.is_repair]
    repaired = sum(p.net_fen for p in repairs) // policy.contribution_fen if policy.contribution_fen else 0
    months = rules.months(policy.waiting_period_months, lapsed, repaired)
    return Finding(
        policy.pool, covering.paid.region, evidence + tuple(i for p in repairs for i in p.event_ids()),
        expected_fen=owed, paid_fen=paid,
        benefit_start=add_months(max(year_bounds(year)[0], local_day(paid_at)), months),
        registrations=(registered,), payment_refs=(covering.payment_ref, *(p.payment_ref for p in repairs)),
        lapsed_years=lapsed, repaired_years=repaired,
    )  # fmt: skip


class History:
    """A person's coverage over the years, computed when first asked (most events never need it)."""

    def __init__(self, state: PersonState, policies: PolicyBook) -> None:
        self.state = state
        self.policies = policies
        self._covered: dict[int, bool] | None = None

    @property
    def covered(self) -> dict[int, bool]:
        if self._covered is None:
            self._covered = coverage_by_year(self.state, self.policies)
        return self._covered

    def lapsed_years(self, year: int, counted_from: int) -> int:
        return lapsed_years(self.covered, self.state.past, year, counted_from)


def coverage_by_year(state: PersonState, policies: PolicyBook) -> dict[int, bool]:
    """Covered or not (SPEC section 6, in any pool), for every coverage year the person holds an
    active registration for; other years were not covered."""
    registrations: dict[int, list[Registration]] = {}
    for registration in state.registrations.values():
        if registration.active:
            registrations.setdefault(registration.coverage_year, []).append(registration)
    net: dict[int, dict[str, int]] = {}
    for payment in state.payments.values():
        if payment.coverage_year in registrations and not payment.is_repair:
            by_pool = net.setdefault(payment.coverage_year, {})
            by_pool[payment.pool] = by_pool.get(payment.pool, 0) + payment.net_fen
    covered: dict[int, bool] = {}
    for year, held in sorted(registrations.items()):
        categories = tuple(sorted({h.category for h in state.hardship.values() if h.valid_in(year)}))
        covered[year] = is_covered(held, net.get(year, {}), _expected(policies, year, categories))
    return covered


def _expected(policies: PolicyBook, year: int, categories: tuple[str, ...]) -> Callable[[str], int | None]:
    return lambda pool: policies.expected_fen(pool, year, categories)


def lapsed_years(covered: dict[int, bool], past: PastYears | None, year: int, counted_from: int) -> int:
    """Consecutive uncovered years before ``year``, back to the last covered one, none before
    ``counted_from`` counted; 0 for a person never covered before (a first enrollment is no lapse)."""
    last = max((y for y, held in covered.items() if held and y < year), default=None)
    if last is None and past is not None:
        last = past.last_covered
    if last is None:
        return 0
    return max(0, year - 1 - max(last, counted_from - 1))


def continuous_years(covered: dict[int, bool], past: PastYears | None, year: int) -> int | None:
    """Consecutive covered years ending with ``year`` (None when ``year`` is not covered), counting the
    forgotten years' run when the covered years reach back to them."""
    if not covered.get(year):
        return None
    count, earlier = 0, year
    while covered.get(earlier):
        count, earlier = count + 1, earlier - 1
    if past is not None and earlier == past.before - 1:
        count += past.run
    return count


def is_covered(
    registrations: Iterable[Registration], net_by_pool: dict[str, int], expected: Callable[[str], int | None]
) -> bool:
    """Covered for a year: an employee registration, or a resident registration whose pool has received
    the expected contribution (or has no policy that says what it is)."""
    for registration in registrations:
        if registration.insurance_type != "RESIDENT":
            return True
        owed = expected(registration.pool)
        if owed is None or net_by_pool.get(registration.pool, 0) >= owed:
            return True
    return False


def latest_membership(membership: Membership) -> tuple[int, str, str]:
    return membership.occurred_at, membership.school_code, membership.student_ref


def covering_payment(payments: list[Payment], owed: int | None) -> Payment | None:
    """The payment that last brought the net amount paid up to what is owed, in business time: its
    payments and refunds taken in ``occurred_at`` order. A refund after it never undoes it (a
    waiting period records that coverage began then); a correction of the records can."""
    if owed is None or owed <= 0:
        return None
    parts = [(p.paid.occurred_at, 0, p.payment_ref, p) for p in payments if p.paid]
    parts.extend((p.refunded.occurred_at, 1, p.payment_ref, p) for p in payments if p.refunded)
    parts.sort(key=lambda part: part[:3])
    paid: dict[str, int] = {}
    refunded: dict[str, int] = {}
    net, covering = 0, None
    for _, is_refund, ref, payment in parts:
        before = max(0, paid.get(ref, 0) - refunded.get(ref, 0))
        if is_refund:
            refunded[ref] = payment.refunded.amount_fen if payment.refunded else 0
        else:
            paid[ref] = payment.paid.amount_fen if payment.paid else 0
        after = max(0, paid.get(ref, 0) - refunded.get(ref, 0))
        if not is_refund and net < owed <= net - before + after:
            covering = payment
        net += after - before
    return covering


def _attribution(
    memberships: list[Membership], registrations: list[Registration]
) -> tuple[str, str, Membership | None]:
    """Pool and county for alerts without a pool discriminator: the student's latest roster entry,
    else the earliest registration involved."""
    if memberships:
        latest = max(memberships, key=latest_membership)
        return latest.pool, latest.school_region, latest
    first = min(registrations, key=lambda r: (r.occurred_at, r.enrollment_ref), default=None)
    return (first.pool, first.region, None) if first else ("000000", "000000", None)


def _order(key: AlertKey) -> tuple[int, int, str]:
    return _KIND_RANK[key[0]], key[1], key[2]


def _evidence(records: tuple[str, ...], cause: Cause) -> tuple[str, ...]:
    ordered = tuple(sorted(set(records)))
    return ordered if cause.event_id in ordered else (*ordered, cause.event_id)


def _open_record(
    person_key: str, state: PersonState, key: AlertKey, finding: Finding, cause: Cause, as_of: int
) -> AlertRecord:
    kind, year, discriminator = key
    membership = finding.membership
    return trusted_record(
        AlertRecord,
        alert_id=alert_id(kind, person_key, year, discriminator),
        kind=kind,
        status="OPEN",
        person_key=person_key,
        coverage_year=year,
        pool=finding.pool,
        as_of=as_of,
        severity=SEVERITY[kind],
        evidence=_evidence(finding.evidence, cause),
        details=trusted_record(
            AlertDetails,
            county=finding.county,
            masked_id=state.masked_id,
            school_code=membership.school_code if membership else None,
            school_type=membership.school_type if membership else None,
            student_ref=membership.student_ref if membership else None,
            expected_fen=finding.expected_fen,
            paid_fen=finding.paid_fen,
            benefit_start=finding.benefit_start,
            registrations=tuple(
                trusted_record(
                    RegistrationRef,
                    enrollment_ref=r.enrollment_ref,
                    insurance_type=r.insurance_type,
                    pool=r.pool,
                    region=r.region,
                )
                for r in finding.registrations
            ),
            payment_refs=finding.payment_refs,
            approval_pools=finding.approval_pools,
            school_name=membership.school_name if membership else None,
            incomplete_sources=cause.incomplete,
            lapsed_years=finding.lapsed_years,
            repaired_years=finding.repaired_years,
        ),
    )


def _resolved_record(
    person_key: str, state: PersonState, key: AlertKey, opened: OpenAlert, cause: Cause, as_of: int
) -> AlertRecord:
    kind, year, discriminator = key
    return trusted_record(
        AlertRecord,
        alert_id=alert_id(kind, person_key, year, discriminator),
        kind=kind,
        status="RESOLVED",
        person_key=person_key,
        coverage_year=year,
        pool=opened.pool,
        as_of=as_of,
        severity=SEVERITY[kind],
        evidence=(cause.event_id,),
        details=trusted_record(
            AlertDetails,
            county=opened.county,
            masked_id=state.masked_id,
            school_code=opened.school_code,
            school_type=opened.school_type,
            student_ref=opened.student_ref,
            school_name=opened.school_name,
        ),
    )
