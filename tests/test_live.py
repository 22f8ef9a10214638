"""The live pipeline on a real broker (SPEC sections 4 and 7): live equals replay and ground truth,
faults lose no alert, bad messages are dead-lettered while the worker carries on."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from infra.admin import ensure_topics
from infra.broker import free_port, wait_for_http
from infra.readback import TopicTail, wait_until_processed
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message, encode_message, new_event, to_json_line
from schemas.models import AlertRecord, ClockTick
from streams.core.clock import tick_message
from streams.live.partition_store import partition_of
from tests.cli import enrollbridge
from tests.files import GOOD_ROWS, write_csv
from tests.live import Season, Workers, alerts, archive_log, dead_letters, final_states, live_settings, stream
from tests.support import at, key_of, registration, roster

pytestmark = pytest.mark.kafka


def _replayed(tmp_path: Path, settings: Settings, season: Season) -> list[AlertRecord]:
    """``enrollbridge replay`` of the unified log read back from Kafka, one archive file per partition."""
    logs = archive_log(settings, tmp_path)
    out = tmp_path / "replayed.jsonl"
    coverage = tmp_path / "replayed-coverage.jsonl"
    run = enrollbridge(
        "replay", *logs, "--policy", season.folder / "policy.toml", "--out", out, "--coverage-out", coverage
    )
    assert run.returncode == 0, run.stderr
    assert "archived log, order kept" in run.stdout
    return [AlertRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]


def test_live_equals_the_replay_of_its_log_and_the_ground_truth(tmp_path: Path, kafka_bootstrap: str) -> None:
    season = Season(tmp_path / "season", 1_200, seed=3)
    settings = live_settings(kafka_bootstrap, tmp_path, policy_file=season.policy_file)
    workers = Workers(settings, tmp_path)
    workers.start()
    try:
        published = stream(settings, season)
    finally:
        workers.stop_all()
    assert published.events == season.merged.count and published.ticks == len(season.ticks)
    live = alerts(settings)
    assert final_states(live) == season.truth()
    # The same records in the same order, partition by partition, as a replay of the log.
    replayed = _replayed(tmp_path, settings, season)
    for partition, (mine, theirs) in _per_partition(live, replayed, settings.partitions).items():
        assert mine == theirs, f"partition {partition} differs"
    # And the coverage status changes, the source of the figures.
    replayed_coverage = (tmp_path / "replayed-coverage.jsonl").read_bytes().splitlines()
    assert len(replayed_coverage) > season.merged.count // 4
    live_coverage = [
        (r.partition, r.value) for r in asyncio.run(_read(settings, Topics(settings.topic_prefix).coverage))
    ]
    for partition in range(settings.partitions):
        mine = [
            to_json_line(decode_message(value, ("CoverageRecord",))) for p, value in live_coverage if p == partition
        ]
        theirs = [
            line for line in replayed_coverage
            if partition_of(orjson.loads(line)["person_key"].encode(), settings.partitions) == partition
        ]  # fmt: skip
        assert mine == theirs, f"coverage of partition {partition} differs"
    assert "Traceback" not in workers.logs()


def test_two_seasons_history_loaded_then_the_new_season_streamed_equal_the_replay_of_the_log(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """A first deployment in the 2027 season: the 2026 season's records are loaded as history (and the
    clock, catching up, passes every 2026 checkpoint at once), then the 2027 season streams in."""
    season = Season(tmp_path / "season", 500, seed=13, years=(2026, 2027))
    settings = live_settings(kafka_bootstrap, tmp_path, policy_file=season.policy_file)
    history, current = season.split(season.since)
    assert history.count and current.count
    caught_up = tuple(t for t in season.ticks if t < season.since)
    workers = Workers(settings, tmp_path)
    workers.start()
    try:
        stream(settings, season, merged=history, ticks=[], then_ticks=caught_up)
        stream(settings, season, merged=current, ticks=[t for t in season.ticks if t >= season.since])
    finally:
        workers.stop_all()
    live = alerts(settings)
    replayed = _replayed(tmp_path, settings, season)
    for partition, (mine, theirs) in _per_partition(live, replayed, settings.partitions).items():
        assert mine == theirs, f"partition {partition} differs"
    # What ends open is what the ground truth says; the 2027 waiting periods counted the 2026 lapses.
    opened = {alert_id for alert_id, status in final_states(live).items() if status == "OPEN"}
    assert opened == {alert_id for alert_id, status in season.truth().items() if status == "OPEN"}
    lapses = [a for _, a in live if a.kind == "WAITING_PERIOD" and a.coverage_year == 2027 and a.details.lapsed_years]
    assert len(lapses) > 5
    assert {a.coverage_year for _, a in live} == {2026, 2027}
    assert "Traceback" not in workers.logs()


@pytest.mark.parametrize(
    ("workers_count", "store"),
    [(1, "rocksdb"), (2, "rocksdb"), (2, "memory")],
    ids=["restart", "two-workers", "memory-store-rebalanced"],
)
def test_a_killed_worker_loses_no_alert(tmp_path: Path, kafka_bootstrap: str, workers_count: int, store: str) -> None:
    # Many payers without a registration: their grace-period due times are pending at every moment,
    # so partitions that move mid-season must take them along.
    season = Season(tmp_path / "season", 800, seed=4, rates={"paid_unregistered": 0.1})
    # RocksDB is production's store
    settings = live_settings(kafka_bootstrap, tmp_path, store=store, policy_file=season.policy_file)
    workers = Workers(settings, tmp_path)
    victim = workers.start(store_dir=tmp_path / "store-0")
    if workers_count == 2:
        workers.start(store_dir=tmp_path / "store-1")
    ticks = 0

    def kill_midway(_bar: object) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == len(season.ticks) // 2:
            workers.kill(victim)  # SIGKILL: no chance to flush or commit
            if workers_count == 1 or store == "memory":
                # The same machine comes back (RocksDB), or a fresh memory-store worker joins: its
                # partitions are rebuilt from the changelog, payment due times with them, and the
                # partitions move again.
                workers.start(store_dir=tmp_path / "store-0")

    try:
        stream(settings, season, on_tick=kill_midway)
    finally:
        workers.stop_all()
    assert victim.returncode == -signal.SIGKILL
    live = alerts(settings)
    # Nothing is missing against a replay of the log the workers read; duplicates are allowed
    # (at-least-once), but only of identical records.
    replayed = _replayed(tmp_path, settings, season)
    assert {to_json_line(a) for _, a in live} == {to_json_line(a) for a in replayed}
    # Partition by partition too: an engine acting for a person of another partition (a due time given
    # to the wrong partition) writes a correct-looking alert to the wrong place.
    for partition, (mine, theirs) in _per_partition(live, replayed, settings.partitions).items():
        assert set(mine) == set(theirs), f"partition {partition} differs"
    assert final_states(live) == season.truth()
    # The audit of this run's archive verifies, re-delivered copies and all.
    _archive(settings, tmp_path / "archive", season)
    verified = enrollbridge("audit", "verify", tmp_path / "archive")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _per_partition(
    live: list[tuple[int, AlertRecord]], replayed: list[AlertRecord], partitions: int
) -> dict[int, tuple[list[bytes], list[bytes]]]:
    """For each partition: the alert records the workers wrote to it, and the replay's records of the
    persons whose events it holds, each in emission order."""
    return {
        partition: (
            [to_json_line(a) for p, a in live if p == partition],
            [to_json_line(a) for a in replayed if partition_of(a.person_key.encode(), partitions) == partition],
        )
        for partition in range(partitions)
    }


def _archive(settings: Settings, archive: Path, season: Season) -> str:
    """``enrollbridge archive`` of a test's topics; returns its output."""
    run = enrollbridge(
        "archive", "--out", archive, "--bootstrap-servers", settings.bootstrap_servers or "",
        "--topic-prefix", settings.topic_prefix, "--app-id", settings.app_id,
        "--policy", season.folder / "policy.toml", "--wait", 60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_season_archived_from_a_live_run_verifies_and_later_runs_extend_the_chain(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    season = Season(tmp_path / "season", 500, seed=6)
    settings = live_settings(kafka_bootstrap, tmp_path, policy_file=season.policy_file)
    workers = Workers(settings, tmp_path)
    workers.start()
    try:
        stream(settings, season)
        first = _archive(settings, tmp_path / "archive", season)
        head = re.search(r"head of the manifest chain: ([0-9a-f]{64})", first)
        assert head and "warning" not in first
        verified = enrollbridge("audit", "verify", tmp_path / "archive", "--head", head.group(1))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"{season.merged.count} log events replayed" in verified.stdout

        # More of the season arrives (a later tick into every partition); the next run appends to the chain.
        async def later_tick() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
            await producer.start()
            try:
                for partition in range(settings.partitions):
                    await producer.send_and_wait(
                        Topics(settings.topic_prefix).events,
                        tick_message(season.until + 86_400_000),
                        partition=partition,
                    )
            finally:
                await producer.stop()

        asyncio.run(later_tick())
        second = _archive(settings, tmp_path / "archive", season)
    finally:
        workers.stop_all()
    assert f"archived {settings.partitions} log events" in second
    entries = (tmp_path / "archive" / "manifest.jsonl").read_bytes().splitlines()
    assert orjson.loads(entries[-1])["sequence"] == len(entries) > 1 + 2 * settings.partitions
    verified = enrollbridge("audit", "verify", tmp_path / "archive")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The head of the first run still verifies: the honest append extends it, and verify says by how much.
    extended = enrollbridge("audit", "verify", tmp_path / "archive", "--head", head.group(1))
    assert extended.returncode == 0, extended.stdout + extended.stderr
    assert re.search(r"the archive extends it, \d+ entr(y|ies) came after it", extended.stdout), extended.stdout


def test_bad_messages_go_to_the_dead_letter_topic_and_the_worker_carries_on(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    settings = live_settings(kafka_bootstrap, tmp_path)
    topics = Topics(settings.topic_prefix)
    workers = Workers(settings, tmp_path)
    workers.start()
    wrong_schema = encode_message(
        new_event(ClockTick, occurred_at=0)  # a valid record, but not what an agency topic carries
    )
    unknown_schema = b"\xc3\x01" + b"\x00" * 8 + b"\x02"
    good = [
        roster("ann", "2023-09-01T08:00"),
        registration("bob", "2023-09-05T08:00", "E1"),
        registration("bob", "2023-09-06T08:00", "E2", region="450302"),
    ]

    async def publish() -> dict[int, int]:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
        await producer.start()
        try:
            for source_topic in topics.sources.values():
                await producer.send_and_wait(source_topic, b"not avro at all", key=b"x")
            await producer.send_and_wait(topics.source("education"), wrong_schema, key=b"x")
            await producer.send_and_wait(topics.source("tax"), unknown_schema, key=b"x")
            await producer.send_and_wait(topics.events, b"\xc3\x01garbage", partition=1)
            for event in good:
                topic = topics.source("education" if event.schema_name == "RosterChange" else "insurance")
                await producer.send_and_wait(topic, encode_message(event), key=event.person_key.encode())
            log = TopicTail(settings, topics.events, settings.partitions)
            await log.start()
            expected = dict.fromkeys(range(settings.partitions), 0)
            expected[1] = 1
            for event in good:
                expected[partition_of(event.person_key.encode(), settings.partitions)] += 1
            await log.wait_for(expected, 60, "the funnel")
            for partition in range(settings.partitions):
                await producer.send_and_wait(topics.events, tick_message(at("2023-10-01T00:00")), partition=partition)
                expected[partition] += 1
            await log.wait_for(expected, 60, "the ticks")
            await log.stop()
            return expected
        finally:
            await producer.stop()

    try:
        ends = asyncio.run(publish())
        asyncio.run(wait_until_processed(settings, settings.app_id, ends, topics.events))
    finally:
        workers.stop_all()
    letters = dead_letters(settings)
    by_topic = Counter((letter.topic, letter.error_code) for letter in letters)
    assert by_topic == Counter(
        {
            (topics.source("education"), "UNDECODABLE"): 1,
            (topics.source("insurance"), "UNDECODABLE"): 1,
            (topics.source("tax"), "UNDECODABLE"): 1,
            (topics.source("hardship"), "UNDECODABLE"): 1,
            (topics.source("education"), "UNEXPECTED_SCHEMA"): 1,
            (topics.source("tax"), "UNKNOWN_SCHEMA"): 1,
            (topics.events, "UNDECODABLE"): 1,
        }
    )
    for letter in letters:
        assert letter.partition is not None and letter.offset is not None
        assert letter.origin == f"{letter.topic}[{letter.partition}]@{letter.offset}"
    # What followed the bad messages was processed.
    opened = {(a.kind, a.person_key) for _, a in alerts(settings) if a.status == "OPEN"}
    assert opened == {("UNENROLLED", key_of("ann")), ("DUPLICATE_ENROLLMENT", key_of("bob"))}


def test_ingest_publishes_events_and_dead_letters_to_kafka(
    tmp_path: Path, kafka_bootstrap: str, secret_env: str
) -> None:
    settings = live_settings(kafka_bootstrap, tmp_path)
    rows = [GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "payment_ref": "PJ-2"}, {**GOOD_ROWS["tax"], "region": "x"}]
    source = write_csv(tmp_path / "tax.csv", rows)
    run = enrollbridge(
        "ingest", "tax", source, "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", settings.topic_prefix
    )
    assert run.returncode == 0, run.stderr
    assert "tax: read 3, accepted 2, rejected 1" in run.stdout
    topics = Topics(settings.topic_prefix)

    async def count(topic: str) -> list[bytes]:
        from infra.readback import read_topic

        return [record.value async for record in read_topic(settings, topic)]

    payments = asyncio.run(count(topics.source("tax")))
    letters = asyncio.run(count(topics.dead_letters))
    assert len(payments) == 2 and len(letters) == 1
    assert GOOD_ROWS["tax"]["id_number"].encode() not in b"".join(payments + letters)


def test_worker_without_kafka_starts_and_stops_the_embedded_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "BOOTSTRAP" not in k}
    port = free_port()
    command = [sys.executable, "-m", "enrollbridge", "worker", "--store", "memory", "--web-port", str(port)]
    worker = subprocess.Popen(
        command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        match = re.search(r"embedded Kafka-compatible broker \(Tansu, memory only\) at 127\.0\.0\.1:(\d+)", first)
        assert match, first
        broker_port = int(match.group(1))
        page = wait_for_http(f"http://127.0.0.1:{port}/status.json", timeout=60)
        assert orjson.loads(page)["events"] == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    import socket

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker_port), timeout=1):
        pass


def test_the_wall_clock_ticks_every_partition(tmp_path: Path, kafka_bootstrap: str) -> None:
    # No gating sources: the clock follows the wall clock alone (tests/test_live_clock.py has the watermarks).
    settings = live_settings(
        kafka_bootstrap, tmp_path, clock="wall", tick_interval=1.0, partitions=3, gating_sources=""
    )
    asyncio.run(ensure_topics(settings))
    workers = Workers(settings, tmp_path)
    workers.start()
    ticked: dict[int, list[int]] = {}
    try:
        deadline = time.monotonic() + 90
        while len(ticked) < settings.partitions and time.monotonic() < deadline:
            time.sleep(1)
            records = asyncio.run(_read(settings, Topics(settings.topic_prefix).events))
            ticked = {}
            for record in records:
                tick = decode_message(record.value, ("ClockTick",))
                assert isinstance(tick, ClockTick)
                ticked.setdefault(record.partition, []).append(tick.occurred_at)
    finally:
        workers.stop_all()
    assert sorted(ticked) == list(range(settings.partitions)), workers.logs()
    for times in ticked.values():
        assert times == sorted(set(times)), "ticks go forward, one per instant"
        assert all(at % 1000 == 0 for at in times), "ticks are aligned to the interval"


async def _read(settings: Settings, topic: str) -> list[Any]:
    from infra.readback import read_topic

    return [record async for record in read_topic(settings, topic)]
