"""Per-person state: what the agencies currently say about one person, keyed by their references.

Every *slot* is one agency reference (SPEC section 3, versions and re-delivery): a roster entry
(school, student_ref), a registration (enrollment_ref), a payment's PAID side and its REFUNDED side
(payment_ref) and a hardship status (status_ref). Of the records delivered for a slot, the one with
the latest version time (``recorded_at``, else ``occurred_at``; equal times: the greater
``event_id``) is the slot's *current* record, which the rules read.

A slot also keeps the earlier versions that were in force at some business time: a version stays
while no later version has an ``occurred_at`` at or before its own (a registration and its
cancellation both stay; a corrected record and the record it corrects, both at the same time or the
correction backdated, keep only the correction). So the state knows, for any business time T, which
version of each slot applied at T (``at``) -- what figures "as of T" count -- and all of it is a pure
function of the *set* of records delivered: the order of delivery changes nothing, and a record
delivered again, or one that a later version already overrides, changes nothing.

The state is bounded whatever the input (a person's state is one message on the table's changelog,
and a Kafka broker accepts 1 MiB by default): at most ``MAX_RECORDS`` records per person,
``MAX_VERSIONS`` per slot and ``MAX_TEXT`` characters of text per record. What does not fit is left
out and counted (``overflow``); the engine reports it.

Years of history: the registrations and payments of coverage years before a horizon (the policy
file's ``history_years``) are *forgotten* (``forget``): what the rules still need of them -- the
latest covered year, and how many consecutive years were covered up to the horizon -- is kept as
``past``, and their open alerts stay as last written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from schemas.models import (
    PaymentChange,
    RegistrationChange,
    RosterChange,
    SourceEvent,
)
from schemas.regions import pool_of
from schemas.times import year_bounds

# Bounds of one person's state. A student over a dozen coverage years holds a few dozen records;
# the largest state these allow dumps well under 1 MiB (tested with every field at its limit).
MAX_RECORDS = 256  # records kept per person, current and earlier versions together
MAX_VERSIONS = 8  # versions in force kept per slot (the current one and up to 7 earlier ones)
MAX_TEXT = 256  # characters of text per record (codes, references, school name)
MAX_MASKED_ID = 32  # a masked identity number is 18 characters


class Membership(NamedTuple):
    """A roster entry (school, student_ref) as one version reports it."""

    event_id: str
    occurred_at: int
    version_time: int
    enrolled: bool
    school_code: str
    student_ref: str
    school_type: str
    school_region: str
    school_name: str | None

    @property
    def pool(self) -> str:
        return pool_of(self.school_region)


class Registration(NamedTuple):
    """An enrollment registration (enrollment_ref) as one version reports it."""

    event_id: str
    occurred_at: int
    version_time: int
    active: bool
    enrollment_ref: str
    insurance_type: str
    region: str
    coverage_year: int

    @property
    def pool(self) -> str:
        return pool_of(self.region)


class PaymentPart(NamedTuple):
    """One side (PAID or REFUNDED) of a payment reference, as one version reports it."""

    event_id: str
    occurred_at: int
    version_time: int
    amount_fen: int
    region: str
    coverage_year: int
    purpose: str | None  # None is CONTRIBUTION


class Payment(NamedTuple):
    """A payment reference: what was paid and what was refunded under it."""

    payment_ref: str
    paid: PaymentPart | None
    refunded: PaymentPart | None

    @property
    def basis(self) -> PaymentPart:
        """The part that says where and for which year: the payment, or the refund if no payment is known."""
        part = self.paid or self.refunded
        assert part is not None  # a Payment is only created from one of its parts
        return part

    @property
    def net_fen(self) -> int:
        paid = self.paid.amount_fen if self.paid else 0
        refunded = self.refunded.amount_fen if self.refunded else 0
        return max(0, paid - refunded)

    @property
    def pool(self) -> str:
        return pool_of(self.basis.region)

    @property
    def coverage_year(self) -> int:
        return self.basis.coverage_year

    @property
    def is_repair(self) -> bool:
        """A repair payment (修复缴费): it shortens a waiting period and never counts toward coverage."""
        return self.basis.purpose == "REPAIR"

    def event_ids(self) -> list[str]:
        return [part.event_id for part in (self.paid, self.refunded) if part]


class HardshipStatus(NamedTuple):
    """A hardship status (status_ref) as one version reports it."""

    event_id: str
    occurred_at: int
    version_time: int
    certified: bool
    status_ref: str
    category: str
    approval_region: str
    valid_from: int
    valid_to: int | None

    @property
    def approval_pool(self) -> str:
        return pool_of(self.approval_region)

    def valid_in(self, year: int) -> bool:
        """Valid in coverage year Y: valid_from <= 31 Dec Y and (open-ended or valid_to >= 1 Jan Y)."""
        first, last = year_bounds(year)
        return self.certified and self.valid_from <= last and (self.valid_to is None or self.valid_to >= first)


class OpenAlert(NamedTuple):
    """An open alert's attribution as its latest OPEN record showed it: what a RESOLVED record repeats,
    and what tells whether the alert must be written again because the student moved (SPEC section 6)."""

    pool: str
    county: str
    school_code: str | None
    school_type: str | None
    student_ref: str | None
    school_name: str | None = None
    # A waiting period under continuity rules is written again when these change (SPEC section 6).
    benefit_start: int | None = None
    lapsed_years: int | None = None
    repaired_years: int | None = None


class PastYears(NamedTuple):
    """What a state keeps of the coverage years it forgot (every year before ``before``): enough for
    the continuity rules -- lapsed years count back to the last covered year, continuous years run
    back through the horizon."""

    before: int  # the first coverage year still held in full
    last_covered: int | None  # the latest covered year before ``before``, if any
    run: int  # consecutive covered years ending with before - 1 (0 when that year was not covered)


class Version(Protocol):
    @property
    def event_id(self) -> str: ...

    @property
    def occurred_at(self) -> int: ...

    @property
    def version_time(self) -> int: ...


V = TypeVar("V", Membership, Registration, PaymentPart, HardshipStatus)

AlertKey = tuple[str, int, str]  # (kind, coverage_year, discriminator)
# A slot: its kind and the agency's reference(s). Kinds: R roster, E registration, P paid side,
# Q refunded side, H hardship (one letter each: the keys are stored with every earlier version).
SlotKey = tuple[str, ...]


class Change(Enum):
    """What one record did to a person's state."""

    NONE = "none"  # re-delivered, or overridden by a version already known: nothing changed
    HISTORY = "history"  # an earlier version in business time: figures as of past dates change, rules do not
    CURRENT = "current"  # a slot's current record changed: the rules evaluate again


def _key(version: Version) -> tuple[int, str]:
    return version.version_time, version.event_id


def _occurred(version: Version) -> int:
    return version.occurred_at


def in_force(versions: tuple[V, ...], record: V) -> tuple[V, ...] | None:
    """The versions of a slot in force once ``record`` is known (ascending ``occurred_at``, which is also
    ascending version), or None when it changes nothing: it is known already, or a later version
    applies from its ``occurred_at`` or earlier. A version stays in force until a later version
    applies from its own ``occurred_at`` or earlier."""
    key = _key(record)
    kept: list[V] = []
    for version in versions:
        if version.event_id == record.event_id:
            return None
        later = _key(version) > key
        if later and version.occurred_at <= record.occurred_at:
            return None
        if not later and version.occurred_at >= record.occurred_at:
            continue  # overridden by the record from the time it applies
        kept.append(version)
    kept.append(record)
    kept.sort(key=_occurred)
    return tuple(kept)


def _text_length(*texts: str | None) -> int:
    return sum(len(text) for text in texts if text)


@dataclass(slots=True)
class PersonState:
    masked_id: str
    roster: dict[tuple[str, str], Membership] = field(default_factory=dict)
    registrations: dict[str, Registration] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    hardship: dict[str, HardshipStatus] = field(default_factory=dict)
    earlier: dict[SlotKey, tuple[Any, ...]] = field(default_factory=dict)  # earlier versions still in force
    open_alerts: dict[AlertKey, OpenAlert] = field(default_factory=dict)
    # Resolved alerts: when they ended and where they were filed then. A record delivered late can
    # change where the student was while the alert was open (their roster entry came after it was
    # resolved): the alert is then filed again, so figures by county do not depend on delivery order.
    closed_alerts: dict[AlertKey, tuple[int, OpenAlert]] = field(default_factory=dict)
    overflow: int = 0  # records, or earlier versions, that did not fit (MAX_RECORDS, MAX_VERSIONS, MAX_TEXT)
    past: PastYears | None = None  # the coverage years forgotten, summarised (None: none forgotten)
    records: int = 0  # records held (current and earlier): kept up to date, not stored

    def __post_init__(self) -> None:
        self.masked_id = self.masked_id[:MAX_MASKED_ID]

    def apply(self, event: SourceEvent) -> Change:
        """Fold one source event into the state."""
        if isinstance(event, RosterChange):
            membership = Membership(
                event.event_id, event.occurred_at, event.version_time, event.action == "ENROLLED", event.school_code,
                event.student_ref, event.school_type, event.school_region, event.school_name,
            )  # fmt: skip
            text = _text_length(event.school_code, event.student_ref, event.school_name)
            return self._place(
                self.roster, (event.school_code, event.student_ref), ("R", *membership[4:6]), membership, text
            )
        if isinstance(event, RegistrationChange):
            registration = Registration(
                event.event_id, event.occurred_at, event.version_time, event.action == "REGISTERED",
                event.enrollment_ref, event.insurance_type, event.region, event.coverage_year,
            )  # fmt: skip
            text = _text_length(event.enrollment_ref)
            return self._place(
                self.registrations, event.enrollment_ref, ("E", event.enrollment_ref), registration, text
            )
        if isinstance(event, PaymentChange):
            return self._apply_payment(event)
        status = HardshipStatus(
            event.event_id, event.occurred_at, event.version_time, event.action == "CERTIFIED", event.status_ref,
            event.category, event.approval_region, event.valid_from, event.valid_to,
        )  # fmt: skip
        return self._place(
            self.hardship, event.status_ref, ("H", event.status_ref), status, _text_length(event.status_ref)
        )

    def _apply_payment(self, event: PaymentChange) -> Change:
        part = PaymentPart(
            event.event_id, event.occurred_at, event.version_time, event.amount_fen, event.region,
            event.coverage_year, event.purpose,
        )  # fmt: skip
        ref, is_paid = event.payment_ref, event.action == "PAID"
        payment = self.payments.get(ref) or Payment(ref, None, None)
        sides: dict[str, PaymentPart] = {}
        side = payment.paid if is_paid else payment.refunded
        if side is not None:
            sides[ref] = side
        change = self._place(sides, ref, ("P" if is_paid else "Q", ref), part, _text_length(ref))
        if change is Change.CURRENT:
            # Built directly: NamedTuple._replace costs several times as much (a map over every field).
            current = sides[ref]
            paid, refunded = (current, payment.refunded) if is_paid else (payment.paid, current)
            self.payments[ref] = Payment(ref, paid, refunded)
        return change

    def _place(self, slots: dict[Any, V], key: Any, slot: SlotKey, record: V, text: int) -> Change:
        """Put one record in its slot by the version rule, within the bounds."""
        current = slots.get(key)
        versions: tuple[V, ...] = (*self.earlier.get(slot, ()), current) if current is not None else ()
        if text > MAX_TEXT:
            self.overflow += 1
            return Change.NONE
        placed = in_force(versions, record)
        if placed is None:
            return Change.NONE
        room = MAX_RECORDS - (self.records - len(versions))  # what this slot may hold
        if len(placed) > min(room, MAX_VERSIONS):
            # The oldest versions go first: the current record always stays (when it fits at all).
            placed = placed[len(placed) - min(room, MAX_VERSIONS) :]
            self.overflow += 1
            if not placed or record not in placed:
                return Change.NONE
        self.records += len(placed) - len(versions)
        if len(placed) > 1:
            self.earlier[slot] = placed[:-1]
        else:
            self.earlier.pop(slot, None)
        if placed[-1] is current:
            return Change.HISTORY
        slots[key] = placed[-1]
        return Change.CURRENT

    # -- business time -------------------------------------------------------------------------

    def times_from(self, start: int) -> list[int]:
        """``start`` and every later ``occurred_at`` of a version held: where the state as of a business
        time can change."""
        found = {start}
        for versions in self._all_versions():
            found.update(v.occurred_at for v in versions if v.occurred_at > start)
        return sorted(found)

    def at(self, moment: int) -> PersonState:
        """The state as of business time ``moment``: for each slot, the version in force then (none if
        its first version happened later). Open alerts are not part of it."""
        if not self._current_after(moment):
            return self
        view = PersonState(self.masked_id, past=self.past)
        for key, membership in self.roster.items():
            if (enrolment := self._as_of(("R", *key), membership, moment)) is not None:
                view.roster[key] = enrolment
        for ref, registration in self.registrations.items():
            if (registered := self._as_of(("E", ref), registration, moment)) is not None:
                view.registrations[ref] = registered
        for ref, payment in self.payments.items():
            paid = self._as_of(("P", ref), payment.paid, moment)
            refunded = self._as_of(("Q", ref), payment.refunded, moment)
            if paid is not None or refunded is not None:
                view.payments[ref] = Payment(ref, paid, refunded)
        for ref, status in self.hardship.items():
            if (certified := self._as_of(("H", ref), status, moment)) is not None:
                view.hardship[ref] = certified
        return view

    def _current_after(self, moment: int) -> bool:
        """Whether a slot's current record happened after ``moment`` (asked on most evaluations: read
        in place, without collecting the records)."""
        for membership in self.roster.values():
            if membership.occurred_at > moment:
                return True
        for registration in self.registrations.values():
            if registration.occurred_at > moment:
                return True
        for payment in self.payments.values():
            paid, refunded = payment.paid, payment.refunded
            if (paid is not None and paid.occurred_at > moment) or (
                refunded is not None and refunded.occurred_at > moment
            ):
                return True
        return any(status.occurred_at > moment for status in self.hardship.values())

    def _as_of(self, slot: SlotKey, current: V | None, moment: int) -> V | None:
        if current is None or current.occurred_at <= moment:
            return current
        found = None
        for version in self.earlier.get(slot, ()):
            if version.occurred_at > moment:
                break
            found = version
        return found

    def _current(self) -> list[tuple[Version, ...]]:
        found: list[tuple[Version, ...]] = [tuple(self.roster.values()), tuple(self.registrations.values())]
        found.append(tuple(p for payment in self.payments.values() for p in (payment.paid, payment.refunded) if p))
        found.append(tuple(self.hardship.values()))
        return found

    def _all_versions(self) -> list[tuple[Version, ...]]:
        return [*self._current(), *self.earlier.values()]

    # -- views the rules use ---------------------------------------------------------------------

    def years(self) -> set[int]:
        """Coverage years the person's own records or open alerts mention."""
        found = {registration.coverage_year for registration in self.registrations.values()}
        found.update(payment.coverage_year for payment in self.payments.values())
        found.update(key[1] for key in self.open_alerts)
        return found

    def roster_pools(self) -> set[str]:
        return {membership.pool for membership in self.roster.values() if membership.enrolled}

    # -- years of history --------------------------------------------------------------------------

    def kept(self, year: int) -> bool:
        """Whether coverage year ``year`` is held in full (not forgotten)."""
        return self.past is None or year >= self.past.before

    def forget(self, before: int, covered: dict[int, bool]) -> bool:
        """Forget the coverage years before ``before``: their registrations and payments (every version)
        and open alerts go; ``past`` summarises them with ``covered`` (year -> covered, as the rules
        found it before forgetting; a year not in it was not covered). False when nothing changed."""
        old = self.past
        if old is not None and before <= old.before:
            return False
        held = [r.coverage_year for r in self.registrations.values()]
        held += [p.coverage_year for p in self.payments.values()]
        start = old.before if old is not None else min((y for y in held if y < before), default=before)
        last, run = (old.last_covered, old.run) if old is not None else (None, 0)
        for year in range(start, before):
            last, run = (year, run + 1) if covered.get(year) else (last, 0)
        self.past = PastYears(before, last, run)
        for ref in [ref for ref, r in self.registrations.items() if r.coverage_year < before]:
            del self.registrations[ref]
            self.earlier.pop(("E", ref), None)
        for ref in [ref for ref, p in self.payments.items() if p.coverage_year < before]:
            del self.payments[ref]
            self.earlier.pop(("P", ref), None)
            self.earlier.pop(("Q", ref), None)
        for key in [key for key in self.open_alerts if key[1] < before]:
            del self.open_alerts[key]
        for key in [key for key in self.closed_alerts if key[1] < before]:
            del self.closed_alerts[key]
        self.records = sum(len(versions) for versions in self._all_versions())
        return True


# -- storage form ----------------------------------------------------------------------------------
# A state is stored as one compact JSON array (the Faust table's value): slots as arrays of their
# fields, in insertion order, so loading it back gives the same state (and the same iteration order).
# Format 3 (years of history): format 2, the summary of the forgotten years (``past``) and the resolved
# alerts with where they were filed (``closed_alerts``).
# Format 2 (versions): every record carries its version time; earlier versions in force are kept
# per slot; the overflow count. Format 1 (before versions) is still read: its records' version time
# is their occurred_at, and its list of replaced ids is no longer needed.
_FORMAT = 3
_SLOT_TYPES: dict[str, type[Any]] = {
    "R": Membership, "E": Registration, "P": PaymentPart, "Q": PaymentPart, "H": HardshipStatus
}  # fmt: skip


def dump_state(state: PersonState) -> bytes:
    return orjson.dumps(
        [
            _FORMAT,
            state.masked_id,
            list(state.roster.values()),
            list(state.registrations.values()),
            [[p.payment_ref, p.paid, p.refunded] for p in state.payments.values()],
            list(state.hardship.values()),
            [[list(slot), list(versions)] for slot, versions in state.earlier.items()],
            [[*key, *_without_trailing_nulls(opened)] for key, opened in state.open_alerts.items()],
            state.overflow,
            state.past,
            [[*key, ended, *filed] for key, (ended, filed) in state.closed_alerts.items()],
        ],
        option=orjson.OPT_PASSTHROUGH_SUBCLASS,
        default=list,
    )


def _without_trailing_nulls(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    """An open alert's fields without the trailing empty ones (they are the defaults when read back)."""
    end = len(fields)
    while end > 5 and fields[end - 1] is None:
        end -= 1
    return fields[:end]


def load_state(data: bytes) -> PersonState:
    stored = orjson.loads(data)
    if stored[0] == 1:
        return _load_format_1(stored)
    if stored[0] not in (2, _FORMAT):
        raise ValueError(f"person state format {stored[0]} is not one of 1, 2, {_FORMAT}")
    _, masked_id, roster, registrations, payments, hardship, earlier, open_alerts, overflow, *more = stored
    past = more[0] if more else None  # format 2 forgot nothing
    closed_alerts = more[1] if len(more) > 1 else []  # format 2 kept no resolved alerts
    state = PersonState(masked_id, overflow=overflow, past=PastYears(*past) if past else None)
    for fields in roster:
        membership = Membership(*fields)
        state.roster[(membership.school_code, membership.student_ref)] = membership
    for fields in registrations:
        registration = Registration(*fields)
        state.registrations[registration.enrollment_ref] = registration
    for ref, paid, refunded in payments:
        state.payments[ref] = Payment(
            ref, PaymentPart(*paid) if paid else None, PaymentPart(*refunded) if refunded else None
        )
    for fields in hardship:
        status = HardshipStatus(*fields)
        state.hardship[status.status_ref] = status
    for slot, versions in earlier:
        record_type = _SLOT_TYPES[slot[0]]
        state.earlier[tuple(slot)] = tuple(record_type(*fields) for fields in versions)
    for kind, year, discriminator, *opened in open_alerts:
        state.open_alerts[(kind, year, discriminator)] = OpenAlert(*opened)
    for kind, year, discriminator, ended, *filed in closed_alerts:
        state.closed_alerts[(kind, year, discriminator)] = (ended, OpenAlert(*filed))
    state.records = sum(len(versions) for versions in state._all_versions())
    return state


def _load_format_1(stored: list[Any]) -> PersonState:
    """A state written before versions: version time = occurred_at, no school name, no purpose."""
    _, masked_id, roster, registrations, payments, hardship, _superseded, open_alerts = stored
    state = PersonState(masked_id)
    for event_id, occurred_at, enrolled, school_code, student_ref, school_type, school_region in roster:
        membership = Membership(
            event_id, occurred_at, occurred_at, enrolled, school_code, student_ref, school_type, school_region, None
        )
        state.roster[(membership.school_code, membership.student_ref)] = membership
    for event_id, occurred_at, *rest in registrations:
        registration = Registration(event_id, occurred_at, occurred_at, *rest)
        state.registrations[registration.enrollment_ref] = registration

    def part(fields: list[Any] | None) -> PaymentPart | None:
        if not fields:
            return None
        event_id, occurred_at, amount_fen, region, coverage_year = fields
        return PaymentPart(event_id, occurred_at, occurred_at, amount_fen, region, coverage_year, None)

    for ref, paid, refunded in payments:
        state.payments[ref] = Payment(ref, part(paid), part(refunded))
    for event_id, occurred_at, *rest in hardship:
        status = HardshipStatus(event_id, occurred_at, occurred_at, *rest)
        state.hardship[status.status_ref] = status
    for kind, year, discriminator, *opened in open_alerts:
        state.open_alerts[(kind, year, discriminator)] = OpenAlert(*opened)
    state.records = sum(len(versions) for versions in state._all_versions())
    return state
