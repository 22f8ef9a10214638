"""Per-person state: what the agencies currently say about one person, keyed by their references.

Every slot holds the latest record for one agency reference (SPEC section 3, re-delivery):
a record replaces the slot's record when it is not older (by ``occurred_at``); a record already
seen (the slot's own or one it replaced) changes nothing, so re-delivery is harmless wherever it
happens in the log. State grows only with the person's own records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from schemas.models import (
    HardshipStatusChange,
    PaymentChange,
    RegistrationChange,
    RosterChange,
    SourceEvent,
)
from schemas.regions import pool_of
from schemas.times import year_bounds


class Membership(NamedTuple):
    """A roster entry (school, student_ref) as last reported."""

    event_id: str
    occurred_at: int
    enrolled: bool
    school_code: str
    student_ref: str
    school_type: str
    school_region: str

    @property
    def pool(self) -> str:
        return pool_of(self.school_region)


class Registration(NamedTuple):
    """An enrollment registration (enrollment_ref) as last reported."""

    event_id: str
    occurred_at: int
    active: bool
    enrollment_ref: str
    insurance_type: str
    region: str
    coverage_year: int

    @property
    def pool(self) -> str:
        return pool_of(self.region)


class PaymentPart(NamedTuple):
    """One side (PAID or REFUNDED) of a payment reference."""

    event_id: str
    occurred_at: int
    amount_fen: int
    region: str
    coverage_year: int


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

    def event_ids(self) -> list[str]:
        return [part.event_id for part in (self.paid, self.refunded) if part]


class HardshipStatus(NamedTuple):
    """A hardship status (status_ref) as last reported."""

    event_id: str
    occurred_at: int
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
    """What a RESOLVED record repeats from its OPEN record."""

    pool: str
    county: str
    school_code: str | None
    school_type: str | None
    student_ref: str | None


AlertKey = tuple[str, int, str]  # (kind, coverage_year, discriminator)


@dataclass(slots=True)
class PersonState:
    masked_id: str
    roster: dict[tuple[str, str], Membership] = field(default_factory=dict)
    registrations: dict[str, Registration] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    hardship: dict[str, HardshipStatus] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)
    open_alerts: dict[AlertKey, OpenAlert] = field(default_factory=dict)

    def apply(self, event: SourceEvent) -> bool:
        """Fold one source event into the state; False when it changes nothing (re-delivery, stale)."""
        if event.event_id in self.superseded:
            return False
        if isinstance(event, RosterChange):
            return self._apply_roster(event)
        if isinstance(event, RegistrationChange):
            return self._apply_registration(event)
        if isinstance(event, PaymentChange):
            return self._apply_payment(event)
        return self._apply_hardship(event)

    def _replaces(self, current: Any, event: SourceEvent) -> bool:
        """Whether the event takes the place of the slot's current record (and remember what it replaced)."""
        if current is None:
            return True
        if current.event_id == event.event_id or event.occurred_at < current.occurred_at:
            return False
        self.superseded.add(current.event_id)
        return True

    def _apply_roster(self, event: RosterChange) -> bool:
        key = (event.school_code, event.student_ref)
        if not self._replaces(self.roster.get(key), event):
            return False
        self.roster[key] = Membership(
            event.event_id, event.occurred_at, event.action == "ENROLLED", event.school_code, event.student_ref,
            event.school_type, event.school_region,
        )  # fmt: skip
        return True

    def _apply_registration(self, event: RegistrationChange) -> bool:
        if not self._replaces(self.registrations.get(event.enrollment_ref), event):
            return False
        self.registrations[event.enrollment_ref] = Registration(
            event.event_id, event.occurred_at, event.action == "REGISTERED", event.enrollment_ref,
            event.insurance_type, event.region, event.coverage_year,
        )  # fmt: skip
        return True

    def _apply_payment(self, event: PaymentChange) -> bool:
        payment = self.payments.get(event.payment_ref) or Payment(event.payment_ref, None, None)
        is_paid = event.action == "PAID"
        if not self._replaces(payment.paid if is_paid else payment.refunded, event):
            return False
        part = PaymentPart(event.event_id, event.occurred_at, event.amount_fen, event.region, event.coverage_year)
        self.payments[event.payment_ref] = payment._replace(paid=part) if is_paid else payment._replace(refunded=part)
        return True

    def _apply_hardship(self, event: HardshipStatusChange) -> bool:
        if not self._replaces(self.hardship.get(event.status_ref), event):
            return False
        self.hardship[event.status_ref] = HardshipStatus(
            event.event_id, event.occurred_at, event.action == "CERTIFIED", event.status_ref, event.category,
            event.approval_region, event.valid_from, event.valid_to,
        )  # fmt: skip
        return True

    def years(self) -> set[int]:
        """Coverage years the person's own records or open alerts mention."""
        found = {registration.coverage_year for registration in self.registrations.values()}
        found.update(payment.coverage_year for payment in self.payments.values())
        found.update(key[1] for key in self.open_alerts)
        return found

    def roster_pools(self) -> set[str]:
        return {membership.pool for membership in self.roster.values() if membership.enrolled}


# -- storage form ----------------------------------------------------------------------------------
# A state is stored as one compact JSON array (the Faust table's value): slots as arrays of their
# fields, in insertion order, so loading it back gives the same state (and the same iteration order).
_FORMAT = 1


def dump_state(state: PersonState) -> bytes:
    return orjson.dumps(
        [
            _FORMAT,
            state.masked_id,
            list(state.roster.values()),
            list(state.registrations.values()),
            [[p.payment_ref, p.paid, p.refunded] for p in state.payments.values()],
            list(state.hardship.values()),
            sorted(state.superseded),
            [[*key, *opened] for key, opened in state.open_alerts.items()],
        ],
        option=orjson.OPT_PASSTHROUGH_SUBCLASS,
        default=list,
    )


def load_state(data: bytes) -> PersonState:
    fmt, masked_id, roster, registrations, payments, hardship, superseded, open_alerts = orjson.loads(data)
    if fmt != _FORMAT:
        raise ValueError(f"person state format {fmt} is not {_FORMAT}")
    state = PersonState(masked_id)
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
    state.superseded = set(superseded)
    for kind, year, discriminator, *opened in open_alerts:
        state.open_alerts[(kind, year, discriminator)] = OpenAlert(*opened)
    return state
