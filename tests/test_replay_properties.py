"""Properties of the rules and the replay over generated seasons (SPEC sections 4 and 6)."""

from __future__ import annotations

import itertools
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import JsonLinesWriter, new_event, to_json_line
from schemas.models import AlertRecord, SourceEvent
from schemas.regions import pool_of
from schemas.times import format_instant
from streams.core.policy import load_policies
from streams.replay import replay
from tests.support import at, hardship, key_of, payment, registration, roster

POLICIES = load_policies()  # Liuzhou 450200 and Fushun 210400, coverage year 2024
UNTIL = at("2024-04-01T00:00")
START = at("2023-08-15T00:00")
PEOPLE = ("ann", "bob", "cat")
REGIONS = ("450202", "450203", "450302", "210402")  # 450300 has no policy
settings.register_profile("replay", max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

any_minute = st.integers(0, (UNTIL - START) // 60_000 - 1)
# Some records share instants, so corrections with the same time (and their re-delivery) happen.
shared_minute = st.one_of(any_minute, st.sampled_from([60_000, 100_000, 150_000]))


def _when(offset: int) -> str:
    return format_instant(START + offset * 60_000 + 17_000)  # never on a tick's whole minute


def records(minute: st.SearchStrategy[int]) -> st.SearchStrategy[SourceEvent]:
    people = st.sampled_from(PEOPLE)
    regions = st.sampled_from(REGIONS)
    rosters = st.builds(
        lambda p, t, region, action, school: roster(p, _when(t), action=action, region=region, school=school),
        people,
        minute,
        regions,
        st.sampled_from(["ENROLLED", "ENROLLED", "LEFT"]),
        st.sampled_from(["S1", "S2"]),
    )
    registrations = st.builds(
        lambda p, t, ref, region, kind, action: registration(
            p, _when(t), ref, region=region, insurance=kind, action=action
        ),
        people,
        minute,
        st.sampled_from(["E1", "E2", "E3"]),
        regions,
        st.sampled_from(["RESIDENT", "RESIDENT", "EMPLOYEE"]),
        st.sampled_from(["REGISTERED", "REGISTERED", "CANCELLED"]),
    )
    payments = st.builds(
        lambda p, t, ref, fen, region, action: payment(p, _when(t), ref, fen=fen, region=region, action=action),
        people,
        minute,
        st.sampled_from(["P1", "P2", "P3"]),
        st.sampled_from([19000, 38000, 38000, 10000]),
        regions,
        st.sampled_from(["PAID", "PAID", "REFUNDED"]),
    )
    statuses = st.builds(
        lambda p, t, category, region, action, valid_to: hardship(
            p, _when(t), "H1", category=category, approval_region=region, action=action, valid_to=valid_to
        ),
        people,
        minute,
        st.sampled_from(["ORPHAN", "MINIMUM_LIVING"]),
        regions,
        st.sampled_from(["CERTIFIED", "CERTIFIED", "REVOKED"]),
        st.sampled_from([None, None, "2023-06-30"]),
    )
    # Registrations twice as often: overlapping registrations are where the rules have most to decide.
    return st.one_of(rosters, registrations, registrations, payments, statuses)


seasons = st.lists(records(shared_minute), min_size=1, max_size=25)
# For checking coverage against the records, every record has its own instant.
distinct_seasons = st.lists(records(any_minute), min_size=1, max_size=25, unique_by=lambda e: e.occurred_at)


def run(events: list[SourceEvent], folder: Path, name: str = "events.jsonl") -> tuple[bytes, list[AlertRecord]]:
    path = folder / name
    with JsonLinesWriter(path) as out:
        for event in events:
            out.write(event)
    alerts: list[AlertRecord] = []
    replay([path], POLICIES, alerts.append, until=UNTIL, progress=False)
    return b"".join(to_json_line(alert) + b"\n" for alert in alerts), alerts


@settings(settings.get_profile("replay"))
@given(seasons)
def test_replaying_the_same_log_twice_gives_identical_bytes(events: list[SourceEvent]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        first, _ = run(events, Path(folder), "a.jsonl")
        second, _ = run(events, Path(folder), "b.jsonl")
    assert first == second


def _corrected(event: SourceEvent) -> SourceEvent:
    """The same reference, action and time with other content: what an agency sends to correct a record."""
    fields = event.model_dump(exclude={"event_id"})
    if "amount_fen" in fields:
        fields["amount_fen"] += 19000
    else:
        for name in ("region", "school_region", "approval_region"):
            if name in fields:
                fields[name] = "450302" if fields[name] != "450302" else "450202"
    return new_event(type(event), **fields)


@settings(settings.get_profile("replay"))
@given(seasons, st.data())
def test_delivering_any_record_again_changes_nothing(events: list[SourceEvent], data: Any) -> None:
    if data.draw(st.booleans()):  # a correction at the same instant, right after the record it corrects
        original = data.draw(st.integers(0, len(events) - 1))
        events = [*events[: original + 1], _corrected(events[original]), *events[original + 1 :]]
    index = data.draw(st.integers(0, len(events) - 1))
    later = data.draw(st.integers(index + 1, len(events)))
    again = [*events[:later], events[index], *events[later:]]
    with tempfile.TemporaryDirectory() as folder:
        assert run(events, Path(folder))[0] == run(again, Path(folder))[0]


@settings(settings.get_profile("replay"))
@given(seasons)
def test_an_alert_never_resolves_before_it_opens(events: list[SourceEvent]) -> None:
    """... and is written OPEN again only when it moves to another pool, county or school."""
    with tempfile.TemporaryDirectory() as folder:
        _, alerts = run(events, Path(folder))
    records: dict[str, list[AlertRecord]] = defaultdict(list)
    for alert in alerts:
        records[alert.alert_id].append(alert)
    for sequence in records.values():
        assert sequence[0].status == "OPEN"
        for before, after in itertools.pairwise(sequence):
            assert before.status == "OPEN" or after.status == "OPEN", "resolved twice"
            if before.status == after.status == "OPEN":
                assert _filed_under(before) != _filed_under(after), "written OPEN again, still filed in the same place"


def _filed_under(alert: AlertRecord) -> tuple[str | None, ...]:
    d = alert.details
    return alert.pool, d.county, d.school_code, d.school_type, d.student_ref, d.school_name


def _covered(person: str, events: list[SourceEvent]) -> bool:
    """Covered for 2024 (SPEC section 6), computed here from the records, not by streams/."""
    mine = [e for e in events if e.person_key == key_of(person)]
    registrations = [e for e in mine if type(e).__name__ == "RegistrationChange"]
    latest_registration: dict[str, Any] = {}
    for e in sorted(registrations, key=lambda e: e.occurred_at):
        latest_registration[e.enrollment_ref] = e  # type: ignore[union-attr]
    active = [e for e in latest_registration.values() if e.action == "REGISTERED"]
    statuses: dict[str, Any] = {}
    for e in sorted((e for e in mine if type(e).__name__ == "HardshipStatusChange"), key=lambda e: e.occurred_at):
        statuses[e.status_ref] = e  # type: ignore[union-attr]
    categories = [s.category for s in statuses.values() if s.action == "CERTIFIED" and s.valid_to is None]
    paid: dict[tuple[str, str], Any] = {}
    for e in sorted((e for e in mine if type(e).__name__ == "PaymentChange"), key=lambda e: e.occurred_at):
        paid[(e.payment_ref, e.action)] = e  # type: ignore[union-attr]
    net: dict[str, int] = defaultdict(int)
    for ref in {ref for ref, _ in paid}:
        payment_record, refund = paid.get((ref, "PAID")), paid.get((ref, "REFUNDED"))
        basis = payment_record or refund
        assert basis is not None
        net[pool_of(basis.region)] += max(
            0, (payment_record.amount_fen if payment_record else 0) - (refund.amount_fen if refund else 0)
        )
    for registration_record in active:
        if registration_record.insurance_type == "EMPLOYEE":
            return True
        pool = pool_of(registration_record.region)
        policy = POLICIES.get(pool, 2024)
        if policy is None or net[pool] >= policy.expected_fen(categories):
            return True
    return False


@settings(settings.get_profile("replay"))
@given(distinct_seasons)
def test_after_the_last_tick_every_roster_student_is_covered_or_has_exactly_one_alert(
    events: list[SourceEvent],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _, alerts = run(events, Path(folder))
    last: dict[str, AlertRecord] = {}
    for alert in alerts:
        last[alert.alert_id] = alert
    for person in PEOPLE:
        memberships: dict[tuple[str, str], Any] = {}
        for e in sorted(
            (e for e in events if e.person_key == key_of(person) and type(e).__name__ == "RosterChange"),
            key=lambda e: e.occurred_at,
        ):
            memberships[(e.school_code, e.student_ref)] = e  # type: ignore[union-attr]
        pools = {pool_of(m.school_region) for m in memberships.values() if m.action == "ENROLLED"}
        for pool in pools:
            if POLICIES.get(pool, 2024) is None:
                continue
            open_here = [
                a
                for a in last.values()
                if a.person_key == key_of(person)
                and a.pool == pool
                and a.status == "OPEN"
                and a.kind in ("UNENROLLED", "UNPAID")
            ]
            expected = 0 if _covered(person, events) else 1
            assert len(open_here) == expected, (person, pool, [a.kind for a in open_here])
