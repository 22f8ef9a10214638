"""Years of history (SPEC sections 5 and 6): a person's state keeps the coverage years the policy
file's ``history_years`` says and summarises older ones exactly as the continuity rules need them;
records of a forgotten year are left out; and past years' history gives the same final state in any
order of delivery."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.models import AlertRecord, CoverageRecord, LogEvent, SourceEvent
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import PolicyBook, load_policies
from streams.core.state import PastYears, PersonState, dump_state
from tests.support import key_of, payment, registration, roster, tick
from tests.test_continuity import GUIYANG, LIUZHOU_FEN, covered

settings.register_profile(
    "history", max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)


class Run:
    """An engine with what it wrote, and the events it left out as of forgotten years."""

    def __init__(self, policies: PolicyBook | None = None) -> None:
        self.alerts: list[AlertRecord] = []
        self.coverage: list[CoverageRecord] = []
        self.forgotten: list[SourceEvent] = []
        self.engine = Engine(
            policies or load_policies(), MemoryStore(), self.coverage.append, on_forgotten=self.forgotten.append
        )

    def feed(self, *events: LogEvent) -> list[AlertRecord]:
        emitted = [alert for event in events for alert in self.engine.process(event)]
        self.alerts.extend(emitted)
        return emitted

    def state(self, person: str) -> PersonState:
        state = self.engine.store.get(key_of(person))
        assert state is not None
        return state


def test_years_before_the_horizon_are_forgotten_into_a_summary_the_continuity_count_uses() -> None:
    run = Run()  # Liuzhou, history_years = 3
    # Covered 2022 and 2023 (no Liuzhou policy: a resident registration counts), then 2024-2026.
    run.feed(roster("ann", "2021-09-01T08:00"))
    run.feed(*(registration("ann", f"{year - 1}-09-10T08:00", f"E{year}", year=year) for year in (2022, 2023)))
    for year in (2024, 2025, 2026):
        run.feed(*covered("ann", year))
    run.feed(tick("2027-01-10T00:00"))  # the clock's year 2027: years before 2024 are forgotten
    run.coverage.clear()
    run.feed(*covered("ann", 2027))
    state = run.state("ann")
    assert state.past == PastYears(before=2024, last_covered=2023, run=2)
    assert sorted(r.coverage_year for r in state.registrations.values()) == [2024, 2025, 2026, 2027]
    # 2024-2027 held in full, 2022-2023 from the summary: six continuous years.
    assert [(r.coverage_year, r.covered, r.continuous_years) for r in run.coverage][-1] == (2027, True, 6)


def test_a_record_of_a_forgotten_year_is_left_out_and_counted() -> None:
    run = Run()
    run.feed(*covered("bob", 2024), tick("2028-01-01T00:00"), *covered("bob", 2025))
    cancelled = registration("bob", "2024-02-01T08:00", "E2024", year=2024, action="CANCELLED")
    before = dump_state(run.state("bob"))
    assert run.feed(cancelled) == [] and run.forgotten == [cancelled]
    assert dump_state(run.state("bob")) == before


def test_lapsed_years_reach_back_into_the_forgotten_years() -> None:
    book = load_policies(GUIYANG)
    run = Run(PolicyBook(book, history_years=1))  # Guiyang: 2 months per lapsed year, 9 after 3 or more
    run.feed(*covered("cat", 2025, region="520102", fen=40000), tick("2028-01-01T00:00"))
    run.feed(registration("cat", "2028-10-10T08:00", "E2029", region="520102", year=2029))
    assert run.state("cat").past == PastYears(before=2027, last_covered=2025, run=0)
    [opened] = run.feed(payment("cat", "2028-10-11T08:00", "P2029", fen=40000, region="520102", year=2029))
    # 2026, 2027 and 2028 lapsed (2026 forgotten, but after 2025 the summary's last covered year).
    assert (opened.kind, opened.details.lapsed_years, opened.details.benefit_start) == (
        "WAITING_PERIOD", 3, _day("2029-10-01"),
    )  # fmt: skip


def test_alerts_of_a_forgotten_year_stay_as_last_written() -> None:
    run = Run()
    run.feed(roster("dan", "2023-09-01T08:00"), tick("2026-10-01T00:00"))
    assert sorted(a.coverage_year for a in run.alerts) == [2024, 2025, 2026, 2027]
    run.feed(tick("2028-01-01T00:00"))  # 2024 is forgotten when the student is next touched
    left = run.feed(roster("dan", "2028-02-01T08:00", action="LEFT"))
    assert [(a.kind, a.status, a.coverage_year) for a in left] == [
        ("UNENROLLED", "RESOLVED", y) for y in (2025, 2026, 2027)
    ]
    assert {key[1] for key in run.state("dan").open_alerts} == set()


def test_a_state_holds_the_kept_years_however_many_seasons_it_has_seen() -> None:
    def size_after(first_year: int) -> int:
        run = Run()
        run.feed(roster("eve", f"{first_year - 1}-09-01T08:00"))
        for year in range(first_year, 2028):
            run.feed(*covered("eve", year), payment("eve", f"{year - 1}-10-01T08:00", f"X{year}", year=year))
            run.feed(payment("eve", f"{year - 1}-10-02T08:00", f"X{year}", year=year, action="REFUNDED"))
            run.feed(tick(f"{year}-01-02T00:00"))
        run.feed(*covered("eve", 2028, fen=44000))  # touched once the clock is in 2027: years before 2024 go
        return len(dump_state(run.state("eve")))

    four, twelve = size_after(2024), size_after(2016)
    assert twelve - four < 40, (four, twelve)  # the summary, not eight more years of records


# -- order of delivery -----------------------------------------------------------------------------------

PEOPLE = ("ann", "bob", "cat")


@st.composite
def past_years(draw: st.DrawFn) -> list[SourceEvent]:
    """Registrations and payments of 2024-2026 (some corrected, refunded, repaired, in another pool)."""
    events: list[SourceEvent] = []
    for person in PEOPLE:
        for year in (2024, 2025, 2026):
            shape = draw(st.sampled_from(["covered", "covered", "none", "unpaid", "guilin", "late", "refunded"]))
            full = LIUZHOU_FEN[year]
            if shape == "none":
                continue
            if shape == "guilin":
                events.append(registration(person, f"{year - 1}-09-10T08:00", f"G{year}", region="450302", year=year))
                continue
            events.append(registration(person, f"{year - 1}-09-10T08:00", f"E{year}", year=year))
            if shape == "unpaid":
                continue
            paid_at = f"{year}-02-01T08:00" if shape == "late" else f"{year - 1}-09-11T08:00"
            events.append(payment(person, paid_at, f"P{year}", fen=full, year=year))
            if shape == "refunded":
                events.append(
                    payment(person, f"{year - 1}-11-01T08:00", f"P{year}", fen=full, year=year, action="REFUNDED")
                )
            if draw(st.booleans()):  # the tax bureau corrects the date, recorded later
                events.append(
                    payment(
                        person,
                        f"{year - 1}-09-12T08:00",
                        f"P{year}",
                        fen=full,
                        year=year,
                        recorded=f"{year}-03-01T08:00",
                    )
                )
            if draw(st.booleans()):
                events.append(
                    payment(person, f"{year - 1}-09-13T08:00", f"R{year}", fen=full, year=year, purpose="REPAIR")
                )
    again = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    return events + again  # some delivered twice


THIS_SEASON: list[LogEvent] = [
    *(roster(person, "2023-09-01T08:00") for person in PEOPLE),
    tick("2026-10-01T00:00"),  # a first deployment: the clock passes every checkpoint up to now
    *(e for person in PEOPLE for e in covered(person, 2027, fen=44000)),
    payment("bob", "2026-10-20T08:00", "R2027", fen=44000, year=2027, purpose="REPAIR"),
    tick("2027-01-01T00:00"),
    payment("cat", "2027-02-01T08:00", "P2027", fen=44000, year=2027, action="REFUNDED"),
    tick("2027-04-01T00:00"),
]


def _final(order: list[LogEvent]) -> tuple[dict[str, Any], set[str]]:
    """Each person's state, and the alerts open at the end (one resolved and one never opened are
    alike: history delivered out of order may open an alert the year it lacked then resolves)."""
    run = Run()
    run.feed(*order, *THIS_SEASON)
    states = {person: _canonical(run.state(person)) for person in PEOPLE}
    last = {alert.alert_id: alert.status for alert in run.alerts}
    return states, {alert_id for alert_id, status in last.items() if status == "OPEN"}


def _canonical(state: PersonState) -> Any:
    """The stored state with every collection in a fixed order: dict order follows arrival. Without the
    resolved alerts it remembers: like the alert stream, they are what was written on the way."""
    stored = orjson.loads(dump_state(state))
    for index in (2, 3, 4, 5, 6, 7):
        stored[index] = sorted(stored[index], key=orjson.dumps)
    return stored[:10]


@settings(settings.get_profile("history"))
@given(past_years(), st.randoms(use_true_random=False))
def test_past_years_history_in_any_order_gives_the_same_final_state(events: list[SourceEvent], rng: Any) -> None:
    shuffled: list[LogEvent] = list(events)
    rng.shuffle(shuffled)
    # The clock may tick while the history is loaded (the checkpoints of 2025 pass half-way).
    shuffled.insert(rng.randrange(len(shuffled) + 1), tick("2025-06-01T00:00"))
    in_version_order: list[SourceEvent] = sorted(events, key=lambda e: (e.version_time, e.event_id))
    assert _final(shuffled) == _final(list(in_version_order))


def _day(text: str) -> int:
    from schemas.times import parse_date

    return parse_date(text)


def test_the_policy_file_says_how_many_years_are_kept(tmp_path: Path) -> None:
    from infra.errors import InputError

    text = GUIYANG.read_text(encoding="utf-8")
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("history_years = 3", "history_years = 1"), encoding="utf-8")
    assert load_policies(path).history_years == 1
    path.write_text(text.replace("history_years = 3", 'history_years = "three"'), encoding="utf-8")
    try:
        load_policies(path)
    except InputError as error:
        assert "history_years" in str(error)
    else:
        raise AssertionError("a history_years that is not a number was accepted")
    path.write_text(text.replace("history_years = 3\n", ""), encoding="utf-8")
    assert load_policies(path).history_years is None  # every year kept, as before years of history
    book = load_policies(GUIYANG)
    path.write_text(book.to_toml(), encoding="utf-8")
    again = load_policies(path)
    assert again.history_years == 3 and list(again) == list(book)


def test_the_replay_says_how_many_records_were_of_forgotten_years(tmp_path: Path) -> None:
    from schemas.codec import JsonLinesWriter
    from tests.cli import enrollbridge

    events = tmp_path / "events.jsonl"
    with JsonLinesWriter(events) as out:
        out.write(registration("fay", "2021-09-10T08:00", "E2022", year=2022))
        # Cancelled, says a correction recorded in 2027: by then the clock has passed 2027's checkpoints.
        out.write(
            registration("fay", "2021-12-10T08:00", "E2022", year=2022, action="CANCELLED", recorded="2027-01-05T08:00")
        )
    run = enrollbridge("replay", events, "--out", tmp_path / "alerts.jsonl")
    assert run.returncode == 0, run.stderr
    assert "1 events were for coverage years older than the policy file's history_years keeps" in run.stdout


def test_the_state_size_benchmark_shows_the_cost_per_year_and_its_bound() -> None:
    from enrollbridge.bench.state_size import measure

    sizes = measure(200, 7, load_policies(), progress=False)  # history_years = 3
    per_person = sizes.per_person()
    assert all(later > earlier for earlier, later in itertools.pairwise(per_person[:5]))  # a year more each season
    assert per_person[4] == per_person[5] == per_person[6]  # then the oldest year goes as a new one comes
    assert 150 < sizes.per_year() < 400  # a registration and a payment, each one record
    unbounded = measure(200, 7, PolicyBook(load_policies(), None), progress=False)
    assert unbounded.per_person()[-1] > per_person[-1] + sizes.per_year()
    assert "bytes per person per year" in sizes.render()
