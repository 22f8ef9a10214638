"""Building blocks for tests: events with real content ids, and a season driven through the engine."""

from __future__ import annotations

import hashlib

from schemas.codec import new_event
from schemas.models import (
    AlertRecord,
    ClockTick,
    HardshipStatusChange,
    LogEvent,
    PaymentChange,
    RegistrationChange,
    RosterChange,
)
from schemas.times import parse_instant
from streams.core.clock import make_tick
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import PolicyBook, load_policies


def key_of(name: str) -> str:
    """A stand-in person_key for a named test person."""
    return hashlib.sha256(name.encode()).hexdigest()


def at(text: str) -> int:
    return parse_instant(text)


def roster(
    person: str,
    when: str,
    action: str = "ENROLLED",
    school: str = "S1",
    region: str = "450202",
    school_type: str = "PRIMARY",
    student_ref: str | None = None,
    school_name: str | None = None,
    recorded: str | None = None,
) -> RosterChange:
    return new_event(
        RosterChange,
        person_key=key_of(person),
        occurred_at=at(when),
        masked_id="450202********0011",
        school_code=school,
        school_name=school_name,
        school_type=school_type,
        school_region=region,
        action=action,
        student_ref=student_ref or f"{person}-{school}",
        recorded_at=_recorded(recorded),
    )


def _recorded(recorded: str | None) -> int | None:
    return None if recorded is None else at(recorded)


def registration(
    person: str,
    when: str,
    ref: str,
    region: str = "450202",
    insurance: str = "RESIDENT",
    year: int = 2024,
    action: str = "REGISTERED",
    recorded: str | None = None,
) -> RegistrationChange:
    return new_event(
        RegistrationChange,
        person_key=key_of(person),
        occurred_at=at(when),
        masked_id="450202********0011",
        insurance_type=insurance,
        region=region,
        coverage_year=year,
        action=action,
        enrollment_ref=ref,
        recorded_at=_recorded(recorded),
    )


def payment(
    person: str,
    when: str,
    ref: str,
    fen: int = 38000,
    region: str = "450202",
    year: int = 2024,
    action: str = "PAID",
    recorded: str | None = None,
    purpose: str | None = None,
) -> PaymentChange:
    return new_event(
        PaymentChange,
        person_key=key_of(person),
        occurred_at=at(when),
        masked_id="450202********0011",
        coverage_year=year,
        amount_fen=fen,
        region=region,
        action=action,
        payment_ref=ref,
        recorded_at=_recorded(recorded),
        purpose=purpose,
    )


def hardship(
    person: str,
    when: str,
    ref: str,
    category: str = "ORPHAN",
    approval_region: str = "450202",
    action: str = "CERTIFIED",
    valid_from: str = "2023-01-01",
    valid_to: str | None = None,
    recorded: str | None = None,
) -> HardshipStatusChange:
    return new_event(
        HardshipStatusChange,
        person_key=key_of(person),
        occurred_at=at(when),
        masked_id="450202********0011",
        category=category,
        approval_region=approval_region,
        action=action,
        valid_from=valid_from,
        valid_to=valid_to,
        status_ref=ref,
        recorded_at=_recorded(recorded),
    )


def tick(when: str, incomplete: tuple[str, ...] = ()) -> ClockTick:
    return make_tick(at(when), incomplete)


def shipped_policies(*years: int) -> PolicyBook:
    """The shipped policies of the given coverage years only (with the shipped history_years)."""
    book = load_policies()
    return PolicyBook([policy for policy in book if policy.coverage_year in years], book.history_years)


class Season:
    """An engine over the shipped policies (Liuzhou 450200, 2024) with the alerts it emitted."""

    def __init__(self, policies: PolicyBook | None = None) -> None:
        self.engine = Engine(policies or load_policies(), MemoryStore())
        self.alerts: list[AlertRecord] = []

    def feed(self, *events: LogEvent) -> list[AlertRecord]:
        emitted: list[AlertRecord] = []
        for event in events:
            emitted.extend(self.engine.process(event))
        self.alerts.extend(emitted)
        return emitted

    def open_kinds(self, person: str) -> dict[str, str]:
        """Kind -> discriminator of the alerts currently open for a person (one per kind in these tests)."""
        state = self.engine.store.get(key_of(person))
        return {} if state is None else {kind: disc for (kind, _year, disc) in state.open_alerts}


def transitions(alerts: list[AlertRecord]) -> list[tuple[str, str]]:
    return [(alert.kind, alert.status) for alert in alerts]
