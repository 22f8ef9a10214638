"""The PostgreSQL sink against the real server: idempotent under re-delivery, figures equal to a
direct computation from the replay, and fed live from Kafka by `enrollbridge sink`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from connectors.postgres_sink import MIGRATIONS, PostgresSink
from enrollbridge.history import SinkHistory
from infra.admin import ensure_topics
from schemas.models import AlertRecord, CoverageRecord
from tests.cli import enrollbridge
from tests.conftest import PG_DSN
from tests.live import Season, Workers, live_settings, stream

TABLES = ("alert_current", "alert_transition", "coverage_current")


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Season:
    return Season(tmp_path_factory.mktemp("sink"), 700, seed=31)


@pytest.fixture(scope="module")
def replayed(
    season: Season, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[AlertRecord], list[CoverageRecord]]:
    folder = tmp_path_factory.mktemp("replayed")
    run = enrollbridge(
        "replay", *season.event_files, "--policy", season.folder / "policy.toml", "--until", season.manifest["until"],
        "--out", folder / "alerts.jsonl", "--coverage-out", folder / "coverage.jsonl",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    alerts = [AlertRecord.model_validate_json(line) for line in (folder / "alerts.jsonl").read_bytes().splitlines()]
    coverage = [
        CoverageRecord.model_validate_json(line) for line in (folder / "coverage.jsonl").read_bytes().splitlines()
    ]
    return alerts, coverage


def _dump(schema: str) -> dict[str, list[Any]]:
    with psycopg.connect(PG_DSN) as connection:
        connection.execute(f"SET search_path TO {schema}")
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in TABLES}


def _strip_received(tables: dict[str, list[Any]]) -> dict[str, list[Any]]:
    # received_at is when the row was first stored; everything else must be identical.
    return {table: [row[:-1] if table == "alert_transition" else row for row in rows] for table, rows in tables.items()}


def test_redelivering_every_record_twice_leaves_the_same_tables(
    pg_schema: str, replayed: tuple[list[AlertRecord], list[CoverageRecord]]
) -> None:
    alerts, coverage = replayed
    positioned_alerts = [((0, n), a) for n, a in enumerate(alerts)]
    positioned_coverage = [((0, n), c) for n, c in enumerate(coverage)]
    with PostgresSink(PG_DSN, pg_schema) as sink:
        assert sink.migrate() == len(MIGRATIONS)
        sink.write(positioned_alerts, positioned_coverage)
    once = _dump(pg_schema)
    assert len(once["alert_transition"]) == len({(a.alert_id, orjson.dumps(a.model_dump())) for a in alerts})
    with PostgresSink(PG_DSN, pg_schema) as sink:
        assert sink.migrate() == len(MIGRATIONS)  # already migrated: nothing applied twice
        for _ in range(2):
            # Out of order too: a re-delivered old record must not overwrite a newer state.
            sink.write(reversed(positioned_alerts), reversed(positioned_coverage))
    assert _strip_received(_dump(pg_schema)) == _strip_received(once)
    final = {a.alert_id: a.status for a in alerts}
    assert {row[0]: row[2] for row in once["alert_current"]} == final


def test_figures_equal_a_direct_computation_from_the_replay(
    pg_schema: str, replayed: tuple[list[AlertRecord], list[CoverageRecord]]
) -> None:
    alerts, coverage = replayed
    with PostgresSink(PG_DSN, pg_schema) as sink:
        sink.migrate()
        sink.write([((0, n), a) for n, a in enumerate(alerts)], [((0, n), c) for n, c in enumerate(coverage)])
    with SinkHistory(PG_DSN, pg_schema) as history:
        by_county = {row["county"]: row for row in history.figures(2024, "450200", ("county",))}
        whole = history.figures(2024, "450200", ())
        by_type = {row["school_type"]: row for row in history.figures(2024, "450200", ("school_type",))}
    latest: dict[tuple[str, int, str], CoverageRecord] = {}
    for record in coverage:
        latest[record.person_key, record.coverage_year, record.pool] = record
    expected: dict[str, Counter[str]] = {}
    for record in latest.values():
        if record.on_roster and record.coverage_year == 2024 and record.pool == "450200":
            counts = expected.setdefault(record.county, Counter())
            counts["on_roster"] += 1
            counts["registered"] += record.registered
            counts["covered"] += record.covered
    assert set(by_county) == set(expected)
    for county, counts in expected.items():
        row = by_county[county]
        assert (row["on_roster"], row["registered"], row["covered"]) == (
            counts["on_roster"], counts["registered"], counts["covered"],
        )  # fmt: skip
        assert row["rate"] == round(counts["covered"] / counts["on_roster"], 4)
    assert whole[0]["on_roster"] == sum(c["on_roster"] for c in expected.values())
    assert sum(row["on_roster"] for row in by_type.values()) == whole[0]["on_roster"]
    open_now: dict[str, str] = {}
    for alert in alerts:
        open_now[alert.alert_id] = alert.status
    open_by_kind = Counter(
        a.kind for a in {a.alert_id: a for a in alerts}.values() if a.pool == "450200" and a.coverage_year == 2024
        and open_now[a.alert_id] == "OPEN"
    )  # fmt: skip
    assert whole[0]["open_alerts"] == dict(open_by_kind)


@pytest.mark.kafka
def test_the_sink_command_follows_a_live_season_into_postgresql(
    tmp_path: Path, kafka_bootstrap: str, pg_schema: str, season: Season
) -> None:
    settings = live_settings(kafka_bootstrap, tmp_path, policy_file=season.policy_file)
    workers = Workers(settings, tmp_path)
    workers.start()
    env = {
        **os.environ,
        **settings.as_environment(),
        "ENROLLBRIDGE_PG_DSN": PG_DSN,
        "ENROLLBRIDGE_PG_SCHEMA": pg_schema,
    }
    with (tmp_path / "sink.log").open("wb") as log:
        sink = subprocess.Popen([sys.executable, "-m", "enrollbridge", "sink"], env=env, stdout=log, stderr=log)
    try:
        stream(settings, season)
        truth = season.truth()
        deadline = time.monotonic() + 120
        while True:
            try:
                stored = {row[0]: row[2] for row in _dump(pg_schema)["alert_current"]}
            except psycopg.errors.UndefinedTable:
                stored = {}
            if stored == truth or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        workers.stop_all()
    assert stored == truth, (tmp_path / "sink.log").read_text()
    assert len(_dump(pg_schema)["coverage_current"]) > 600


class SinkProcess:
    """`enrollbridge sink` in its own process on a test's topics, fed by records published directly."""

    def __init__(self, folder: Path, kafka_bootstrap: str, pg_schema: str) -> None:
        self.settings = live_settings(kafka_bootstrap, folder)
        self.schema = pg_schema
        self.log_path = folder / "sink.log"
        asyncio.run(ensure_topics(self.settings))
        self.application = f"sink-test {pg_schema}"  # to find its backend in pg_stat_activity
        env = {**os.environ, **self.settings.as_environment(), "ENROLLBRIDGE_PG_SCHEMA": pg_schema,
               "ENROLLBRIDGE_PG_DSN": make_conninfo(PG_DSN, application_name=self.application)}  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "enrollbridge", "sink"], env=env, stdout=log, stderr=log
            )

    def publish(self, records: Sequence[AlertRecord | CoverageRecord]) -> None:
        from aiokafka import AIOKafkaProducer

        from infra.kafka import aiokafka_options
        from infra.topics import Topics
        from schemas.codec import encode_message

        topics = Topics(self.settings.topic_prefix)

        async def send() -> None:
            producer = AIOKafkaProducer(**aiokafka_options(self.settings), acks="all")
            await producer.start()
            try:
                for record in records:
                    if isinstance(record, AlertRecord):
                        await producer.send(topics.alerts, encode_message(record), key=record.alert_id.encode())
                    else:
                        await producer.send(topics.coverage, encode_message(record), key=record.person_key.encode())
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(send())

    def terminate_backend(self) -> int:
        """pg_terminate_backend of the sink's connection, as an operator (or a failover) would; how many."""
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (self.application,),
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _stored(schema: str) -> tuple[dict[str, str], dict[tuple[str, int, str], tuple[bool, bool, bool]]]:
    try:
        tables = _dump(schema)
        with psycopg.connect(PG_DSN) as connection:
            connection.execute(f"SET search_path TO {schema}")
            coverage = connection.execute(
                "SELECT person_key, coverage_year, pool, on_roster, registered, covered FROM coverage_current"
            ).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return {}, {}
    return {row[0]: row[2] for row in tables["alert_current"]}, {tuple(r[:3]): tuple(r[3:]) for r in coverage}


def _expected(
    alerts: list[AlertRecord], coverage: list[CoverageRecord]
) -> tuple[dict[str, str], dict[tuple[str, int, str], tuple[bool, bool, bool]]]:
    # Each key goes to one partition, in order: the last record per key is what the tables keep.
    return (
        {a.alert_id: a.status for a in alerts},
        {(c.person_key, c.coverage_year, c.pool): (c.on_roster, c.registered, c.covered) for c in coverage},
    )


def _wait_for(sink: SinkProcess, expected: object, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored(sink.schema)
        if stored == expected or time.monotonic() > deadline or sink.process.poll() is not None:
            return stored
        time.sleep(0.5)


@pytest.mark.kafka
def test_the_sink_reconnects_when_its_backend_is_terminated_mid_stream(
    tmp_path: Path, kafka_bootstrap: str, pg_schema: str, replayed: tuple[list[AlertRecord], list[CoverageRecord]]
) -> None:
    alerts, coverage = replayed
    records: list[AlertRecord | CoverageRecord] = [*alerts, *coverage]
    sink = SinkProcess(tmp_path, kafka_bootstrap, pg_schema)
    try:
        chunks = [records[n : n + 200] for n in range(0, len(records), 200)]
        sink.publish(chunks[0])
        deadline = time.monotonic() + 60
        while not _stored(pg_schema)[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        terminated = 0
        for number, chunk in enumerate(chunks[1:]):
            sink.publish(chunk)
            if number % 3 == 0:
                terminated += sink.terminate_backend()
        assert terminated >= 2, sink.log()
        stored = _wait_for(sink, _expected(alerts, coverage))
        assert sink.process.poll() is None, sink.log()
        assert stored == _expected(alerts, coverage), sink.log()
    finally:
        sink.stop()
    log = sink.log()
    assert "lost PostgreSQL (AdminShutdown" in log and "connected to PostgreSQL again" in log, log
    assert "Traceback" not in log, log


@pytest.mark.kafka
def test_the_sink_rebuilds_everything_when_its_schema_is_dropped(
    tmp_path: Path, kafka_bootstrap: str, pg_schema: str, replayed: tuple[list[AlertRecord], list[CoverageRecord]]
) -> None:
    alerts, coverage = replayed
    half = len(alerts) // 2
    sink = SinkProcess(tmp_path, kafka_bootstrap, pg_schema)
    try:
        sink.publish([*alerts[:half], *coverage])
        assert _wait_for(sink, _expected(alerts[:half], coverage)) == _expected(alerts[:half], coverage), sink.log()
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {pg_schema} CASCADE")
        # Noticed while idle, and rebuilt from the beginning of the topics: nothing that was there is lost.
        assert _wait_for(sink, _expected(alerts[:half], coverage)) == _expected(alerts[:half], coverage), sink.log()
        # ... and it carries on with what comes next.
        sink.publish(alerts[half:])
        assert _wait_for(sink, _expected(alerts, coverage)) == _expected(alerts, coverage), sink.log()
        assert sink.process.poll() is None, sink.log()
    finally:
        sink.stop()
    assert f"the tables in {pg_schema} are gone: rebuilding them from the beginning of the topics" in sink.log()


def test_a_record_with_nul_characters_is_stored_and_the_sink_goes_on(
    pg_schema: str, replayed: tuple[list[AlertRecord], list[CoverageRecord]]
) -> None:
    # A producer that bypassed the connectors can put NUL in a school's name; PostgreSQL refuses NUL in
    # text and jsonb, and before the sink replaced it one such record stopped it for good.
    alerts, coverage = replayed
    poisoned = alerts[0].model_copy(
        update={"details": alerts[0].details.model_copy(update={"school_code": "S\x001", "school_name": "一\x00小"})}
    )
    with PostgresSink(PG_DSN, pg_schema) as sink:
        sink.migrate()
        sink.write([((0, 0), poisoned)], [((0, 1), coverage[0].model_copy(update={"school_code": "S\x00"}))])
        sink.write([((0, n), a) for n, a in enumerate(alerts[1:], start=2)])
    tables = _dump(pg_schema)
    assert len(tables["alert_current"]) == len({a.alert_id for a in alerts})
    stored = {row[0]: row for row in tables["alert_current"]}[poisoned.alert_id]
    assert "S\ufffd1" in stored and "\x00" not in str(tables)
