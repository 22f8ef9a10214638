"""Delivery order changes nothing (SPEC sections 3, 4 and 7).

The same records -- with corrections (some backdated), exact re-deliveries and equal-version ties --
delivered live in any interleaving, with the agencies declaring watermarks and a clock that follows
them, end in the same final state per alert as the offline replay; no tick opens an alert on a
source below its watermark without saying so; figures as of any date are the same. The replay's
merge order depends on the events alone: not on file names, order, rows or bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.topics import SOURCE_EVENT
from schemas.codec import JsonLinesWriter, new_event
from schemas.models import AlertRecord, CoverageRecord, SourceEvent
from streams.core.clock import due_ticks, make_tick
from streams.core.engine import Engine, MemoryStore
from streams.core.figures import Figures, fold
from streams.core.watermarks import SourceWatermarks
from streams.replay import replay
from tests.support import at, key_of, payment, registration, roster
from tests.test_replay_properties import POLICIES, START, UNTIL, records, shared_minute

SOURCE_OF = {event_type.schema_name: source for source, event_type in SOURCE_EVENT.items()}
HOUR, DAY = 3_600_000, 86_400_000
WALL_START = at("2024-06-01T09:00")  # a first deployment: the season's history loaded after it ended
settings.register_profile(
    "delivery", max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)


@st.composite
def histories(draw: st.DrawFn) -> list[SourceEvent]:
    """Records of a season, corrected: later versions of the same reference, some with an earlier
    ``occurred_at`` (backdated), some at the very same version time as the record they compete with."""
    events = draw(st.lists(records(shared_minute), min_size=1, max_size=18))
    for _ in range(draw(st.integers(0, 5))):
        original = draw(st.sampled_from(events))
        fields = original.model_dump(exclude={"event_id"})
        for name, other in (("amount_fen", 57000), ("region", "450302"), ("school_region", "450203")):
            if name in fields:
                fields[name] = (
                    other if fields[name] != other else fields[name] + 1 if name == "amount_fen" else "450202"
                )
        if draw(st.booleans()):
            fields["action"] = {"PAID": "REFUNDED", "REFUNDED": "PAID", "ENROLLED": "LEFT", "LEFT": "ENROLLED",
                                "REGISTERED": "CANCELLED", "CANCELLED": "REGISTERED", "CERTIFIED": "REVOKED",
                                "REVOKED": "CERTIFIED"}[fields["action"]]  # fmt: skip
        tie = draw(st.booleans())
        if not tie:
            fields["occurred_at"] = original.occurred_at - draw(st.sampled_from([0, 0, HOUR, 3 * DAY]))
            fields["recorded_at"] = min(original.version_time + draw(st.integers(1, 20 * DAY)), UNTIL - 1)
        events.append(new_event(type(original), **fields))
    return events


def _replayed(events: list[SourceEvent]) -> tuple[list[AlertRecord], list[CoverageRecord]]:
    alerts: list[AlertRecord] = []
    coverage: list[CoverageRecord] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        with JsonLinesWriter(path) as out:
            for event in events:
                out.write(event)
        replay([path], POLICIES, alerts.append, until=UNTIL, progress=False, on_coverage=coverage.append)
    return alerts, coverage


def _final(alerts: list[AlertRecord]) -> dict[str, tuple[str | None, ...]]:
    """alert_id -> where an alert that ends open is filed (resolved and never opened are alike: nothing to do)."""
    last = {alert.alert_id: alert for alert in alerts}
    return {
        alert_id: (
            a.kind,
            a.pool,
            a.details.county,
            a.details.school_code,
            a.details.student_ref,
            a.details.school_name,
        )
        for alert_id, a in last.items()
        if a.status == "OPEN"
    }


class LiveRun:
    """The worker's engine fed in delivery order, with the clock of the watermarks the sources declare."""

    def __init__(self) -> None:
        self.alerts: list[AlertRecord] = []
        self.coverage: list[CoverageRecord] = []
        self.engine = Engine(POLICIES, MemoryStore(), self.coverage.append)
        self.marks = SourceWatermarks(WALL_START)
        self.declared: dict[str, int] = {}  # this test's own record of the declarations
        self.delivered: set[str] = set()
        self.last_tick: int | None = None
        self.checkpoints = POLICIES.checkpoint_tick_times()

    def deliver(self, event: SourceEvent) -> None:
        self.alerts.extend(self.engine.process(event))
        self.delivered.add(event.event_id)

    def declare(self, source: str, through: int, wall: int) -> None:
        self.marks.declare(source, through, wall)
        self.declared[source] = max(self.declared.get(source, through), through)

    def clock(self, wall: int, events: list[SourceEvent]) -> None:
        """Write the ticks the clock's time has passed, and check each one's claim."""
        now = self.marks.clock_time(wall)
        if now is None:
            return
        # Silent sources let the clock follow the wall clock past the season: compare as of its end.
        for moment in due_ticks(self.last_tick, min(now, UNTIL), DAY, self.checkpoints):
            tick = make_tick(moment, self.marks.incomplete(moment))
            below = tuple(s for s in ("education", "insurance", "tax") if self.declared.get(s, START - 1) < moment)
            assert (tick.incomplete or ()) == below
            if not below:  # a complete tick: every gating record recorded before it has been delivered
                for event in events:
                    if SOURCE_OF[event.schema_name] != "hardship" and event.version_time < moment:
                        assert event.event_id in self.delivered
            caused = self.engine.process(tick)
            opened = [a for a in caused if a.status == "OPEN" and a.evidence[-1] == tick.event_id]
            assert all(a.details.incomplete_sources == below for a in opened), "an alert hides what its tick lacked"
            self.alerts.extend(caused)
            self.last_tick = moment


def _honest_watermark(source: str, events: list[SourceEvent], delivered: set[str]) -> int:
    """Complete through just before the earliest version the source has not delivered yet."""
    waiting = [e.version_time for e in events if SOURCE_OF[e.schema_name] == source and e.event_id not in delivered]
    return min(waiting) - 1 if waiting else UNTIL


@settings(settings.get_profile("delivery"))
@given(histories(), st.data())
def test_any_interleaving_of_deliveries_ends_in_the_same_state_and_says_what_its_ticks_lacked(
    events: list[SourceEvent], data: Any
) -> None:
    replayed_alerts, replayed_coverage = _replayed(events)
    again = data.draw(st.lists(st.sampled_from(events), max_size=5))  # exact re-deliveries
    order = data.draw(st.permutations(events + again))
    live, wall = LiveRun(), WALL_START
    for event in order:
        live.deliver(event)
        wall += data.draw(st.integers(0, 30)) * HOUR  # sometimes a source stays silent for 48 hours
        for source in ("education", "insurance", "tax", "hardship"):
            if data.draw(st.booleans()):
                live.declare(source, _honest_watermark(source, events, live.delivered), wall)
        live.clock(wall, events)
    for source in ("education", "insurance", "tax", "hardship"):
        live.declare(source, UNTIL, wall + HOUR)
    live.clock(wall + HOUR, events)
    assert live.last_tick == UNTIL and live.engine.now == UNTIL
    assert _final(live.alerts) == _final(replayed_alerts)
    # Figures as of any date count by business time: the same whatever the delivery order.
    for until in [*POLICIES.checkpoint_tick_times(), at("2023-09-15T00:00"), UNTIL]:
        for pool in ("450200", "210400"):
            assert _on_roster(fold(pool, 2024, live.coverage, (), until)) == _on_roster(
                fold(pool, 2024, replayed_coverage, (), until)
            ), (pool, until)


def _on_roster(figures: Figures) -> dict[str, tuple[object, ...]]:
    """person -> status, of the students on a roster (a student who left and one never there are alike)."""
    return {
        person: (r.registered, r.covered, r.county, r.school_code, r.school_type)
        for person, r in figures.coverage.items()
        if r.on_roster
    }


# -- the replay's merge order ----------------------------------------------------------------------


def _write(path: Path, events: list[SourceEvent], tail: bytes = b"") -> Path:
    with JsonLinesWriter(path) as out:
        for event in events:
            out.write(event)
    if tail:
        with path.open("ab") as raw:
            raw.write(tail)
    return path


def _alerts(paths: list[Path]) -> list[AlertRecord]:
    alerts: list[AlertRecord] = []
    replay(paths, POLICIES, alerts.append, until=UNTIL, progress=False)
    return alerts


def test_equal_times_in_two_files_follow_the_events_not_the_files_bytes(tmp_path: Path) -> None:
    """The tax bureau's file and its corrections file hold a payment at the same instant with two amounts:
    the record with the greater event_id is the one in force, whatever the files are called, their
    order, or a trailing blank line (which used to change the order through each file's digest)."""
    insurance = _write(tmp_path / "insurance.jsonl", [registration("ann", "2023-09-05T08:00", "E1")])
    seen = set()
    for ref in ("P1", "P5"):
        paid = payment("ann", "2023-09-06T08:00", ref, fen=76000)  # twice the contribution
        corrected = payment("ann", "2023-09-06T08:00", ref)
        overpaid = max(paid, corrected, key=lambda e: e.event_id) is paid
        seen.add(overpaid)
        outcomes = set()
        for tail in (b"", b"\n", b"\n\n   \n"):
            for names in (("tax.jsonl", "tax-fix.jsonl"), ("b.jsonl", "a.jsonl")):
                folder = tmp_path / f"{ref}-{len(tail)}-{names[0]}"
                folder.mkdir()
                first, second = _write(folder / names[0], [paid], tail), _write(folder / names[1], [corrected])
                for paths in ([insurance, first, second], [second, insurance, first]):
                    alerts = _alerts(paths)
                    outcomes.add(tuple(alerts))
                    assert [filed[0] for filed in _final(alerts).values()] == (["OVERPAID"] if overpaid else [])
        assert len(outcomes) == 1
    assert seen == {True, False}  # both ways round: the amount does not decide, the event_id does


def test_rows_and_files_in_any_order_replay_to_the_same_bytes(tmp_path: Path) -> None:
    events: list[SourceEvent] = [
        roster("bob", "2023-09-01T08:00"),
        registration("bob", "2023-09-05T08:00", "E1"),
        registration("bob", "2023-09-05T08:00", "E2", region="450302"),  # the same instant: by event_id
        payment("bob", "2023-09-05T08:00", "P1"),
        payment("bob", "2023-09-05T08:00", "P2"),
        registration("bob", "2023-10-10T08:00", "E2", action="CANCELLED"),
    ]
    one = _alerts([_write(tmp_path / "one.jsonl", events)])
    split = _alerts([_write(tmp_path / "x.jsonl", events[3:][::-1]), _write(tmp_path / "y.jsonl", events[:3][::-1])])
    assert one == split and [a.kind for a in one] == ["DUPLICATE_ENROLLMENT", "OVERPAID", "DUPLICATE_ENROLLMENT"]


def test_the_merge_is_by_version_time_and_a_checkpoint_tick_comes_before_events_at_its_time(tmp_path: Path) -> None:
    first_checkpoint_tick = "2023-10-01T00:00"
    events: list[SourceEvent] = [
        roster("cy", "2023-09-01T08:00"),
        # Happened before the checkpoint, recorded at its tick's instant: the tick comes first.
        registration("cy", "2023-09-20T08:00", "E1", recorded=first_checkpoint_tick),
        roster("dee", "2023-09-01T08:00"),
        registration("dee", "2023-09-20T08:00", "E2", recorded="2023-09-30T23:59"),
    ]
    alerts = _alerts([_write(tmp_path / "events.jsonl", events)])
    assert [(a.kind, a.status, a.as_of) for a in alerts if a.person_key == key_of("cy")] == [
        ("UNENROLLED", "OPEN", at(first_checkpoint_tick)),
        ("UNENROLLED", "RESOLVED", at("2023-09-20T08:00")),
        ("UNPAID", "OPEN", at("2023-09-20T08:00")),
    ]
    # Recorded before the checkpoint's tick: registered by then, so unpaid, never unenrolled.
    assert [(a.kind, a.status) for a in alerts if a.person_key == key_of("dee")] == [("UNPAID", "OPEN")]
