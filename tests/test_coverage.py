"""Coverage status of roster students (the figures' source): written when it changes, consistent with
the alerts, and the same whichever way the season is replayed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemas.models import CoverageRecord
from streams.core.engine import Engine, MemoryStore
from tests.cli import enrollbridge
from tests.live import Season
from tests.support import at, hardship, key_of, payment, registration, roster, shipped_policies, tick


def _feed(*events: object) -> list[CoverageRecord]:
    written: list[CoverageRecord] = []
    engine = Engine(shipped_policies(2024), MemoryStore(), written.append)
    for event in events:
        engine.process(event)  # type: ignore[arg-type]
    return written


def _flags(records: list[CoverageRecord]) -> list[tuple[bool, bool, bool]]:
    return [(r.on_roster, r.registered, r.covered) for r in records]


def test_a_student_goes_from_on_roster_to_registered_to_covered_to_left() -> None:
    written = _feed(
        roster("ann", "2023-09-01T08:00", school="S7", school_type="JUNIOR_SECONDARY"),
        registration("ann", "2023-09-10T08:00", "CB-1"),
        payment("ann", "2023-10-01T08:00", "PJ-1", fen=20000),  # a partial payment changes nothing
        payment("ann", "2023-10-02T08:00", "PJ-2", fen=18000),  # now 380 yuan: covered
        tick("2024-01-01T00:00"),  # time alone changes no status
        roster("ann", "2024-02-01T08:00", action="LEFT", school="S7", school_type="JUNIOR_SECONDARY"),
    )
    assert _flags(written) == [(True, False, False), (True, True, False), (True, True, True), (False, True, True)]
    assert {(r.person_key, r.coverage_year, r.pool, r.county, r.school_code, r.school_type) for r in written} == {
        (key_of("ann"), 2024, "450200", "450202", "S7", "JUNIOR_SECONDARY")
    }


def test_a_coverage_record_names_the_school_of_the_latest_roster_entry() -> None:
    written = _feed(
        roster("ann", "2023-09-01T08:00", school="S7", school_name="柳州市第七中学"),
        roster("ann", "2023-10-01T08:00", school="S8", school_name="柳州市第八中学"),
    )
    assert [(r.school_code, r.school_name) for r in written] == [("S7", "柳州市第七中学"), ("S8", "柳州市第八中学")]


def test_a_late_record_corrects_the_statuses_after_its_own_time() -> None:
    """The registration arrives after the payment that followed it: the student counts as registered
    from the registration's time and covered from the payment's, not from when they were delivered."""
    written = _feed(
        roster("bea", "2023-09-01T08:00"),
        payment("bea", "2023-09-08T08:00", "PJ-1"),
        registration("bea", "2023-09-05T08:00", "CB-1"),
    )
    assert [(r.as_of, r.registered, r.covered) for r in written] == [
        (at("2023-09-01T08:00"), False, False),
        (at("2023-09-05T08:00"), True, False),
        (at("2023-09-08T08:00"), True, True),
    ]


def test_employee_insurance_and_full_subsidy_cover_without_a_payment() -> None:
    employee = _feed(
        roster("bob", "2023-09-01T08:00"), registration("bob", "2023-09-02T08:00", "E1", insurance="EMPLOYEE")
    )
    assert _flags(employee)[-1] == (True, True, True)
    orphan = _feed(
        roster("cy", "2023-09-01T08:00"),
        hardship("cy", "2023-09-01T09:00", "H1", category="ORPHAN"),
        registration("cy", "2023-09-02T08:00", "R1"),
    )
    assert _flags(orphan)[-1] == (True, True, True)


def test_nothing_is_written_for_people_not_on_a_roster_or_for_re_deliveries() -> None:
    assert _feed(registration("dee", "2023-09-02T08:00", "R1"), payment("dee", "2023-10-01T08:00", "P1")) == []
    enrolled = roster("eve", "2023-09-01T08:00")
    assert len(_feed(enrolled, enrolled, enrolled)) == 1


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Season:
    return Season(tmp_path_factory.mktemp("coverage"), 800, seed=21)


def _final(path: Path) -> dict[tuple[str, int, str], dict[str, object]]:
    final = {}
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        final[record["person_key"], record["coverage_year"], record["pool"]] = record
    return final


def test_final_coverage_agrees_with_the_open_alerts(season: Season, tmp_path: Path) -> None:
    alerts, coverage = tmp_path / "alerts.jsonl", tmp_path / "coverage.jsonl"
    run = enrollbridge(
        "replay", *season.event_files, "--policy", season.folder / "policy.toml",
        "--until", season.manifest["until"], "--out", alerts, "--coverage-out", coverage,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    open_alerts: dict[tuple[str, int, str], str] = {}
    for line in alerts.read_bytes().splitlines():
        alert = orjson.loads(line)
        if alert["kind"] in ("UNENROLLED", "UNPAID"):
            key = (alert["person_key"], alert["coverage_year"], alert["pool"])
            if alert["status"] == "OPEN":
                open_alerts[key] = alert["kind"]
            else:
                open_alerts.pop(key, None)
    on_roster = {key: record for key, record in _final(coverage).items() if record["on_roster"]}
    assert len(on_roster) > 700
    for key, record in on_roster.items():
        expected = None if record["covered"] else "UNPAID" if record["registered"] else "UNENROLLED"
        assert open_alerts.get(key) == expected, (key, record)
    # Every open roster alert is about a student the coverage says is on the roster.
    assert set(open_alerts) <= set(on_roster)
