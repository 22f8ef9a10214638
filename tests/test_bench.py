"""The benchmark's own arithmetic and fairness (``enrollbridge bench``): every live contender commits
on the same terms, rates leave out the commit that came after the work, every posted record is
accounted for, and each row carries its ratio, target and verdict. No figure is asserted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from enrollbridge.bench import baselines
from enrollbridge.bench.run import (
    COMMIT_EVERY,
    COMMIT_INTERVAL,
    Latencies,
    Row,
    fill_store,
    latency_row,
    render,
    settled_at,
    split_at,
    steady_rate,
)
from enrollbridge.cli import cli
from infra.settings import Settings
from schemas.codec import container_metadata, read_event_container
from schemas.models import ClockTick, LogEvent, SourceEvent
from streams.core.clock import make_tick
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import load_policies
from streams.core.state import dump_state
from streams.live.partition_store import partition_of
from streams.replay import PARTITION_METADATA
from tests.support import at, key_of, payment, registration, roster


def test_the_worker_and_the_faust_baseline_commit_on_the_benchmarks_terms(tmp_path: Path) -> None:
    from streams.live.faust_app import create_app

    settings = Settings(bootstrap_servers="127.0.0.1:9", store="memory", store_dir=tmp_path, web_port=1)
    worker = create_app(settings, load_policies())
    assert (worker.conf.broker_commit_interval, worker.conf.broker_commit_every) == (COMMIT_INTERVAL, COMMIT_EVERY)
    counter = baselines.faust_counter("127.0.0.1:9", "t", "g", 4, str(tmp_path), COMMIT_INTERVAL, COMMIT_EVERY)
    assert (counter.conf.broker_commit_interval, counter.conf.broker_commit_every) == (COMMIT_INTERVAL, COMMIT_EVERY)


def test_the_quix_baseline_commits_on_the_benchmarks_terms(tmp_path: Path) -> None:
    pytest.importorskip("quixstreams")
    app = baselines.quix_application("127.0.0.1:9", "g", str(tmp_path), COMMIT_INTERVAL, COMMIT_EVERY)
    assert (app.config.commit_interval, app.config.commit_every) == (COMMIT_INTERVAL, COMMIT_EVERY)


def test_a_rate_leaves_out_the_final_commit_that_came_after_the_work() -> None:
    # 1,000 messages a second, committed every second; the final commit came 0.9 s after the work.
    commits = [(1.0, 1000), (2.0, 2000), (3.0, 3000), (4.0, 4000), (5.9, 4500)]
    rate = steady_rate(commits, total=4500)
    assert rate is not None
    assert (rate.per_second, rate.intervals, rate.tail) == (1000.0, 3, False)


def test_a_short_run_keeps_the_final_commit_and_says_so() -> None:
    rate = steady_rate([(1.0, 1000), (2.0, 2000), (2.5, 2100)], total=2100)
    assert rate is not None and rate.tail and rate.intervals == 2
    assert rate.per_second == pytest.approx(1100 / 1.5)


def test_a_single_commit_gives_no_rate() -> None:
    assert steady_rate([(1.0, 500)], total=500) is None


def test_every_posted_record_is_accounted_for_and_a_miss_fails_the_row() -> None:
    found = Latencies(posted=200, seconds=[0.1] * 190, rejected=Counter({"BAD_REGION": 2}), missing=8, wait=60)
    row = latency_row(found, rate=1000)
    missed = "missed: of 200 records, 8 without an alert within 60 s, 2 rejected by the source (BAD_REGION)"
    assert row.verdict() == missed
    # 10 of 200 records never answered: the 99th percentile is one of them, so there is no p99 to show.
    assert row.ours == []


def test_latency_met_when_every_record_gave_an_alert_in_time() -> None:
    found = Latencies(posted=100, seconds=[0.05] * 99 + [0.5], wait=60)
    row = latency_row(found, rate=1000)
    assert row.ours == [pytest.approx(50.0)] and row.verdict() == "met"


def test_latency_row_refuses_a_record_it_cannot_account_for() -> None:
    with pytest.raises(AssertionError, match="not accounted"):
        latency_row(Latencies(posted=10, seconds=[0.1] * 9), rate=1000)


def test_rows_show_ratio_target_and_verdict() -> None:
    rows = [
        Row("a", "rows/s", [30.0], "base", [100.0], "≥ 0.1 × baseline", 0.1),
        Row("b", "rows/s", [5.0], "base", [100.0], "≥ 0.1 × baseline", 0.1),
        Row("c", "MiB", [2048.0], target="RSS < 1 GiB", target_max=1024),
        Row("d", "events/s", [], "base", [100.0], "≥ 0.5 ×", 0.5, failure="not measured: no --jobs yet"),
    ]
    assert [row.verdict() for row in rows] == ["met", "missed by 2.0x", "missed by 2.0x", "not measured: no --jobs yet"]
    table = render(rows, "header")
    assert "| measurement | enrollbridge | baseline | ratio | target | verdict | note |" in table
    assert "| a | 30.00 rows/s | base: 100 | 0.30 | ≥ 0.1 × baseline | met |" in table
    assert "| d | — | base: 100 | — | ≥ 0.5 × | not measured: no --jobs yet |" in table


def test_the_sweep_run_starts_at_the_checkpoint_tick() -> None:
    tick = make_tick(at("2023-10-01 00:00"))
    items: list[LogEvent] = [
        roster("a", "2023-09-02 10:00:01"),
        make_tick(at("2023-09-30 00:00")),
        tick,
        registration("a", "2023-10-02 10:00:01", "R1"),
    ]
    before, found, after = split_at(items, tick.occurred_at)
    assert (before, found, after) == (items[:2], tick, items[3:])
    assert isinstance(found, ClockTick)


def _state_bytes(*events: LogEvent) -> bytes:
    store = MemoryStore()
    engine = Engine(load_policies(), store)
    for event in events:
        engine.process(event)
    person = getattr(events[0], "person_key", "")
    state = store.get(person)
    assert state is not None
    return dump_state(state)


def test_only_settled_roster_students_are_copied_into_the_store(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    from streams.live.partition_store import partition_of

    sweep_at = at("2023-10-01 00:00")
    settled = _state_bytes(
        roster("paid", "2023-09-02 10:00:01"),
        registration("paid", "2023-09-03 10:00:01", "R1"),
        payment("paid", "2023-09-03 11:00:01", "P1"),
    )
    unsettled = _state_bytes(roster("unpaid", "2023-09-02 10:00:01"))
    not_on_a_roster = _state_bytes(registration("other", "2023-09-03 10:00:01", "R2"))
    keep = settled_at(load_policies(), sweep_at)
    assert [keep(s) for s in (settled, unsettled, not_on_a_roster)] == [True, False, False]

    originals = {name: key_of(name).encode() for name in ("paid", "unpaid", "other")}
    for partition, name, value in [(0, "paid", settled), (1, "unpaid", unsettled), (1, "other", not_on_a_roster)]:
        db = Rdict(str(tmp_path / "0" / f"persons-{partition}.db"), Options(raw_mode=True))
        db[originals[name]] = value
        db.close()
    filled = fill_store(tmp_path, 500, partitions=2, keep=keep)
    assert (filled.persons, filled.copies, filled.models) == (500, 497, 1)
    stored: Counter[bytes] = Counter()
    for partition in (0, 1):
        db = Rdict(str(tmp_path / "0" / f"persons-{partition}.db"), Options(raw_mode=True))
        for key, value in db.items():
            assert isinstance(key, bytes) and isinstance(value, bytes)
            # Each copy lies in the partition Kafka gives its key (the originals where the test put them).
            assert partition_of(key, 2) == partition or key in originals.values()
            stored[value] += 1
        db.close()
    assert stored == Counter({settled: 498, unsettled: 1, not_on_a_roster: 1})


def test_bench_only_runs_the_rows_named_and_leaves_the_table_alone(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("kept\n")
    arguments = ["bench", "--only", "ingest", "--students", "300", "--runs", "1", "--jobs", "1"]
    result = CliRunner().invoke(cli, [*arguments, "--work", str(tmp_path / "work"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ingest")]
    assert len(rows) == 2 and all("csv module reads the same file" in row for row in rows)
    assert "≥ 0.1 × baseline" in rows[0] and "≥ 0.3 × baseline" in rows[1] and "CPU per row" in rows[0]
    assert "| replay" not in result.output and "| live" not in result.output
    assert out.read_text() == "kept\n"


def test_the_stages_tool_times_every_stage_of_a_replay_of_a_log(tmp_path: Path) -> None:
    """``python -m enrollbridge.bench.stages`` on the log ``bench --only replay --work`` leaves."""
    from enrollbridge.bench.stages import main as stages

    work = tmp_path / "work"
    arguments = ["bench", "--only", "replay", "--students", "300", "--runs", "1", "--jobs", "1", "--work", str(work)]
    assert CliRunner().invoke(cli, [*arguments, "--out", str(tmp_path / "B.md")]).exit_code == 0
    logs = sorted(str(path) for path in (work / "log").glob("*.avro"))
    assert len(logs) == Settings().partitions == 4  # an archive's segments, one per partition
    _is_an_archive_of_the_season([Path(log) for log in logs])
    result = CliRunner().invoke(stages, [str(work / "bench-policy.toml"), *logs, "--runs", "2"])
    assert result.exit_code == 0, result.output
    figures = {
        name.strip(): float(value)
        for name, value, *_ in (line.rsplit(None, 3) for line in result.output.splitlines() if " µs" in line)
    }
    assert set(figures) == {
        "fastavro reads the log", "read into event models", "engine (rules, alert records built)",
        "of which: fold into person states", "of which: build the alert records", "encode an alert message",
        "decode an event message",
    }  # fmt: skip
    assert all(value > 0 for value in figures.values())
    # The parts are work the engine does among the rest.
    engine = figures["engine (rules, alert records built)"]
    assert figures["of which: fold into person states"] < engine
    assert figures["of which: build the alert records"] < engine


def _is_an_archive_of_the_season(logs: list[Path]) -> None:
    """Each segment names its partition, holds the persons Kafka's partitioner routes there, and every
    tick, as a live worker's partitions do."""
    ticks: list[list[int]] = []
    persons = 0
    for number, log in enumerate(logs):
        with log.open("rb") as source:
            assert container_metadata(source)[PARTITION_METADATA] == str(number)
            events = list(read_event_container(source))
        ticks.append([event.occurred_at for event in events if isinstance(event, ClockTick)])
        keys = {event.person_key for event in events if isinstance(event, SourceEvent)}
        assert keys and all(partition_of(key.encode(), len(logs)) == number for key in keys)
        persons += len(keys)
    assert ticks[0] and all(times == ticks[0] for times in ticks)
    assert persons >= 300
