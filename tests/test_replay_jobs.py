"""``replay --jobs N``: the rules in N processes, each over a share of the persons, and outputs byte for
byte those of one process -- for connector outputs (merged) and archived logs (one stream, or several
partitions), with and without ``--until``, alerts and coverage records, and the same counts."""

from __future__ import annotations

import threading
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import to_json_line, write_event_container
from schemas.models import ClockTick, LogEvent
from schemas.times import format_instant
from streams.core.clock import make_tick
from streams.core.engine import Engine, MemoryStore
from streams.replay import (
    FIRST_OFFSET_METADATA,
    PARTITION_METADATA,
    ReplayResult,
    _shares_by_partition,
    replay,
    share_of,
)
from tests.cli import enrollbridge
from tests.live import Season
from tests.support import at, key_of, payment, registration, roster, shipped_policies

JOBS = (1, 2, 3)


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Season:
    # Two seasons: checkpoint sweeps, payment grace periods ending at daily ticks, and the waiting
    # periods of the continuity rules, so that ticks raise alerts in every share.
    return Season(tmp_path_factory.mktemp("jobs"), 800, seed=23, years=(2025, 2026))


@pytest.fixture(scope="module")
def log(season: Season) -> list[LogEvent]:
    """The season as a live worker logs it: events in merge order, a tick every day."""
    return list(season.merged.stream(season.ticks, season.until))


def _replay_command(
    season: Season, inputs: list[Path], folder: Path, jobs: int, *extra: str
) -> tuple[str, bytes, bytes]:
    """stdout (without the line naming the output file), alerts and coverage of the command."""
    folder.mkdir(parents=True, exist_ok=True)
    run = enrollbridge(
        "replay", *inputs, "--policy", season.folder / "policy.toml", "--out", folder / "alerts.jsonl",
        "--coverage-out", folder / "coverage.jsonl", "--jobs", jobs, *extra,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    stdout = "\n".join(line for line in run.stdout.splitlines() if not line.startswith("alerts: "))
    return stdout, (folder / "alerts.jsonl").read_bytes(), (folder / "coverage.jsonl").read_bytes()


def _same_for_every_jobs(
    season: Season, inputs: list[Path], folder: Path, *extra: str, jobs_list: tuple[int, ...] = JOBS[1:]
) -> tuple[str, bytes, bytes]:
    """The command's outputs with --jobs 1, checked to be those of each of ``jobs_list``."""
    one = _replay_command(season, inputs, folder / "jobs-1", 1, *extra)
    assert one[1].count(b"\n") > 100 and one[2].count(b"\n") > 100  # something to get wrong
    for jobs in jobs_list:
        many = _replay_command(season, inputs, folder / f"jobs-{jobs}", jobs, *extra)
        assert many[0] == one[0], f"--jobs {jobs}: summary"
        assert many[1] == one[1], f"--jobs {jobs}: alerts"
        assert many[2] == one[2], f"--jobs {jobs}: coverage"
    return one


def test_connector_outputs_replay_to_the_same_bytes_in_any_number_of_processes(season: Season, tmp_path: Path) -> None:
    stdout, _, _ = _same_for_every_jobs(
        season, season.event_files, tmp_path / "whole", "--until", season.manifest["until"]
    )
    assert "connector outputs, merged" in stdout
    # Stopped halfway: records after --until are counted, not replayed; the tick at --until sweeps.
    halfway = format_instant((season.merged.first or 0) + (season.until - (season.merged.first or 0)) // 2)
    stdout, _, _ = _same_for_every_jobs(
        season, season.event_files, tmp_path / "half", "--until", halfway, jobs_list=(2,)
    )
    assert "events after --until were not replayed" in stdout


def test_an_archived_log_replays_to_the_same_bytes_in_any_number_of_processes(
    season: Season, log: list[LogEvent], tmp_path: Path
) -> None:
    path = tmp_path / "log.avro"
    with path.open("wb") as out:
        write_event_container(out, log)
    stdout, alerts, _ = _same_for_every_jobs(season, [path], tmp_path / "avro")
    assert "archived log, order kept" in stdout
    # The same log as JSON Lines (a log because it holds ticks), stopped at a tick halfway.
    lines = tmp_path / "log.jsonl"
    lines.write_bytes(b"".join(to_json_line(event) + b"\n" for event in log))
    assert _replay_command(season, [lines], tmp_path / "lines", 1)[1] == alerts
    ticks = [event.occurred_at for event in log if isinstance(event, ClockTick)]
    halfway = format_instant(ticks[len(ticks) // 2])
    _same_for_every_jobs(season, [lines], tmp_path / "lines-half", "--until", halfway, jobs_list=(3,))


def test_a_partitioned_archive_replays_to_the_same_bytes_in_any_number_of_processes(
    season: Season, log: list[LogEvent], tmp_path: Path
) -> None:
    """Three partitions (persons by a hash other than the workers'), each in two files given out of
    order: one engine per partition, partitions in order, whatever the number of processes (2 and 3
    share out whole partitions, 4 shares out persons)."""
    files = _partitioned(log, tmp_path, 3)
    files.reverse()
    _same_for_every_jobs(season, files, tmp_path / "partitions", jobs_list=(2, 3, 4))
    ticks = [event.occurred_at for event in log if isinstance(event, ClockTick)]
    third = format_instant(ticks[len(ticks) // 3])
    _same_for_every_jobs(season, files, tmp_path / "partitions-half", "--until", third, jobs_list=(2,))


def _partitioned(log: list[LogEvent], folder: Path, partitions: int) -> list[Path]:
    """The log as an archive of ``partitions`` partitions (persons by a hash other than the shares'),
    each partition in two segment files: every partition holds every tick, as each did live."""
    streams: list[list[LogEvent]] = [[] for _ in range(partitions)]
    for event in log:
        for number, stream in enumerate(streams):
            if isinstance(event, ClockTick) or zlib.adler32(event.person_key.encode()) % partitions == number:
                stream.append(event)
    files = []
    for number, stream in enumerate(streams):
        half = len(stream) // 2
        for first, part in ((0, stream[:half]), (half, stream[half:])):
            path = folder / f"p{number}-{first}.avro"
            with path.open("wb") as out:
                write_event_container(out, part, {PARTITION_METADATA: str(number), FIRST_OFFSET_METADATA: str(first)})
            files.append(path)
    return files


def _counts(result: ReplayResult) -> dict[str, Any]:
    return {name: value for name, value in asdict(result).items() if name != "worker_cpu"}


@pytest.mark.parametrize("kind", ["merged", "log", "partitions"])
def test_the_counts_and_records_are_those_of_one_process(
    season: Season, log: list[LogEvent], tmp_path: Path, kind: str
) -> None:
    """Through the Python API (records as models): every count, every record, in order -- shared out
    by persons, or for an archive of as many partitions as processes or more, by whole partitions."""
    if kind == "merged":
        inputs = season.event_files
        until = (season.merged.first or 0) + (season.until - (season.merged.first or 0)) * 2 // 3
    elif kind == "log":
        inputs = [tmp_path / "log.avro"]
        with inputs[0].open("wb") as out:
            write_event_container(out, log)
        until = season.until
    else:
        inputs = _partitioned(log, tmp_path, 3)
        until = season.until
        assert _shares_by_partition(inputs, 3) and not _shares_by_partition(inputs, 4)
    runs = {}
    for jobs in JOBS:
        alerts: list[Any] = []
        coverage: list[Any] = []
        result = replay(inputs, season.policies, alerts.append, until, False, coverage.append, jobs=jobs)
        runs[jobs] = (_counts(result), alerts, coverage)
    assert runs[1][0]["mode"] == ("merged" if kind == "merged" else "log")
    assert runs[1][0]["persons"] > 700 and runs[1][0]["alerts"] > 0
    if kind == "merged":
        assert runs[1][0]["skipped_after_until"] > 0
    for jobs in JOBS[1:]:
        assert runs[jobs] == runs[1], f"--jobs {jobs}"


def test_every_share_has_persons_and_a_person_stays_in_one_share(season: Season) -> None:
    persons = {
        line.split(b'"person_key":"')[1][:64].decode()
        for path in season.event_files
        for line in path.read_bytes().splitlines()
    }
    for jobs in (2, 3):
        shares = [share_of(person, jobs) for person in persons]
        assert set(shares) == set(range(jobs))
        assert min(shares.count(s) for s in range(jobs)) > len(persons) / jobs * 0.8
        assert shares == [share_of(person, jobs) for person in persons]


def test_a_bad_line_stops_every_number_of_processes_with_the_same_error(season: Season, tmp_path: Path) -> None:
    lines = season.event_files[0].read_bytes().splitlines()
    broken = tmp_path / "education.events.jsonl"
    at = len(lines) // 2
    lines[at] = lines[at].replace(b'"school_type":"', b'"school_type":"NO_SUCH_')
    broken.write_bytes(b"\n".join(lines) + b"\n")
    inputs = [broken, *season.event_files[1:]]
    errors = set()
    for jobs in (1, 3):
        run = enrollbridge(
            "replay", *inputs, "--policy", season.folder / "policy.toml", "--out", tmp_path / f"a{jobs}.jsonl",
            "--jobs", jobs,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        errors.add(run.stderr)
    assert len(errors) == 1 and f"{broken}:{at + 1}: field" in errors.pop()


def test_a_ticks_records_come_in_one_process_order_sweep_then_due_persons_by_due_time(tmp_path: Path) -> None:
    """One tick, the first checkpoint, sweeps roster students not registered (UNENROLLED, in
    person_key order) and then re-evaluates payers whose grace days ended (PAID_UNREGISTERED, in
    order of due time, which is not person_key order): the shares' records interleave in both."""
    events: list[LogEvent] = []
    for number in range(30):
        events.append(roster(f"student {number}", "2023-09-05T08:00:00+08:00"))
    for number in range(60):
        paid = format_instant(at("2023-09-01T00:00:00+08:00") + number * 7_200_000)
        events.append(payment(f"payer {number}", paid, f"P{number}"))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(to_json_line(event) + b"\n" for event in events))
    policies = shipped_policies(2024)
    until = at("2023-10-01T12:00:00+08:00")
    runs = {}
    for jobs in JOBS:
        alerts: list[Any] = []
        replay([path], policies, alerts.append, until, False, jobs=jobs)
        runs[jobs] = [(alert.kind, alert.person_key) for alert in alerts]
    kinds = [kind for kind, _ in runs[1]]
    assert kinds == ["UNENROLLED"] * 30 + ["PAID_UNREGISTERED"] * 60
    due_order = [key_of(f"payer {number}") for number in range(60)]
    assert [person for _, person in runs[1][30:]] == due_order != sorted(due_order)
    assert {share_of(person, 2) for person in due_order} == {0, 1}
    for jobs in JOBS[1:]:
        assert runs[jobs] == runs[1], f"--jobs {jobs}"
    # A process with another thread starts its workers from a fork server, never by forking itself
    # (which Python 3.12 on warns of).
    alerts = []
    waiting = threading.Event()
    other = threading.Thread(target=waiting.wait)
    other.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            replay([path], policies, alerts.append, until, False, jobs=2)
    finally:
        waiting.set()
        other.join()
    assert [str(warning.message) for warning in caught if "fork" in str(warning.message)] == []
    assert [(alert.kind, alert.person_key) for alert in alerts] == runs[1]


def test_the_engine_names_the_place_of_each_of_a_ticks_re_evaluations() -> None:
    """Engine.tick, which the shares' tags come from: the sweep's persons in person_key order as
    (0, 0, person_key), then the payers whose grace ended as (1, due time, person_key) in due order;
    persons whose re-evaluation emitted nothing are left out."""
    policies = shipped_policies(2024)
    engine = Engine(policies, MemoryStore())
    students = [f"student {number}" for number in range(4)]
    paid_at = [at("2023-09-01T00:00:00+08:00") + number * 3_600_000 for number in range(3)]
    payers = [f"payer {number}" for number in range(3)]
    for name in students:
        engine.process(roster(name, "2023-09-05T08:00:00+08:00"))
    engine.process(registration("student 0", "2023-09-06T08:00:00+08:00", "E0"))  # registered: unpaid instead
    for name, when in zip(payers, paid_at, strict=True):
        engine.process(payment(name, format_instant(when), f"P-{name}"))
    engine.process(registration("payer 1", "2023-09-02T08:00:00+08:00", "E1"))  # registered in time: nothing
    evaluated = engine.tick(make_tick(at("2023-10-01T12:00:00+08:00")))
    grace = policies.grace_ms("450200", 2024)
    assert [place for place, _ in evaluated] == [
        *sorted((0, 0, key_of(name)) for name in students),
        (1, paid_at[0] + grace, key_of("payer 0")),
        (1, paid_at[2] + grace, key_of("payer 2")),
    ]
    kinds = {place[2]: [alert.kind for alert in alerts] for place, alerts in evaluated}
    assert kinds[key_of("student 0")] == ["UNPAID"] and kinds[key_of("student 1")] == ["UNENROLLED"]
    assert kinds[key_of("payer 0")] == kinds[key_of("payer 2")] == ["PAID_UNREGISTERED"]
    # A tick that does not move the clock re-evaluates nobody.
    assert engine.tick(make_tick(at("2023-10-01T12:00:00+08:00"))) == []


def test_an_archive_segment_is_a_log_before_its_first_tick_and_a_tickless_container_is_not(tmp_path: Path) -> None:
    """A segment names its partition in its header: it is replayed as the log it is (its order kept,
    no ticks made up) even when it holds no tick yet. A container without that header and without
    ticks is connector output: merged, with the checkpoint's tick at --until."""
    events: list[LogEvent] = [roster(f"student {number}", "2023-09-05T08:00:00+08:00") for number in range(5)]
    segment, output = tmp_path / "segment.avro", tmp_path / "output.avro"
    with segment.open("wb") as out:
        write_event_container(out, events, {PARTITION_METADATA: "0", FIRST_OFFSET_METADATA: "0"})
    with output.open("wb") as out:
        write_event_container(out, events)
    policies = shipped_policies(2024)
    for path, mode in ((segment, "log"), (output, "merged")):
        alerts: list[Any] = []
        result = replay([path], policies, alerts.append, until=at("2023-10-01T12:00:00+08:00"), progress=False)
        assert (result.mode, result.events) == (mode, 5)
        # Either way the tick at --until passes the first checkpoint: every student is unenrolled.
        assert [alert.kind for alert in alerts] == ["UNENROLLED"] * 5
