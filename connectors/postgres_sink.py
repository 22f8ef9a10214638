"""PostgreSQL sink: alert records and coverage status changes into tables the agencies query.

- ``alert_current``: the latest transition per ``alert_id`` (upsert);
- ``alert_transition``: every distinct transition ever received (insert, duplicates ignored);
- ``coverage_current``: the latest coverage status per (person, coverage year, roster pool);
- views ``coverage_figures`` (students on rosters, registered, covered per coverage year, pool,
  county, school and school type) and ``open_alert_figures`` (open alerts by kind, same grain).

Idempotent under re-delivery: each row remembers the position (topic partition and offset, or line
of a file) of the record it holds and only a later position replaces it, so records delivered twice,
or again after a crash, leave the tables as they were. Positions, not ``as_of``, order the
transitions: a late agency record can cause a transition whose event time is earlier than the
previous one's.

The sink creates and migrates its own tables (``MIGRATIONS``, recorded in ``schema_version``) in
the PostgreSQL schema it is given.

Where it has got to is kept in PostgreSQL too (``sink_position``: topic, partition, next offset),
written in the same transaction as the rows, as Kafka Connect's JDBC sink does for exactly-once: the
tables and the positions cannot disagree. On start and on every partition assignment the consumer is
moved to the stored positions, never to Kafka's committed offsets (committed only for lag
monitoring). So a lost connection is retried with backoff and the batch read again from the stored
positions; and when the tables are gone (the schema dropped), so are the positions, and the sink
rebuilds everything from the beginning of the topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import psycopg
from psycopg import sql

from infra.errors import InputError
from infra.postgres import PostgresUnavailable, connect, one_line
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import UndecodableMessage, decode_message, encode_message, to_json_line
from schemas.models import AlertRecord, CoverageRecord, DeadLetter

Position = tuple[int, int]  # (partition, offset), or (0, line number) for a file

MIGRATIONS: list[str] = [
    # 1: alerts, their history, coverage, and the figures built on them
    """
    CREATE TABLE alert_current (
        alert_id text PRIMARY KEY,
        kind text NOT NULL,
        status text NOT NULL,
        person_key text NOT NULL,
        masked_id text NOT NULL,
        coverage_year integer NOT NULL,
        pool text NOT NULL,
        county text NOT NULL,
        school_code text,
        school_type text,
        student_ref text,
        severity text NOT NULL,
        as_of timestamptz NOT NULL,
        record jsonb NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL
    );
    CREATE INDEX alert_current_open ON alert_current (coverage_year, pool, county, kind) WHERE status = 'OPEN';
    CREATE TABLE alert_transition (
        alert_id text NOT NULL,
        record_digest text NOT NULL,
        kind text NOT NULL,
        status text NOT NULL,
        coverage_year integer NOT NULL,
        pool text NOT NULL,
        county text NOT NULL,
        as_of timestamptz NOT NULL,
        record jsonb NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (alert_id, record_digest)
    );
    CREATE INDEX alert_transition_pool ON alert_transition (pool, coverage_year);
    CREATE TABLE coverage_transition (
        person_key text NOT NULL,
        coverage_year integer NOT NULL,
        pool text NOT NULL,
        record_digest text NOT NULL,
        as_of timestamptz NOT NULL,
        record jsonb NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        PRIMARY KEY (person_key, coverage_year, pool, record_digest)
    );
    CREATE INDEX coverage_transition_pool ON coverage_transition (pool, coverage_year);
    CREATE TABLE coverage_current (
        person_key text NOT NULL,
        coverage_year integer NOT NULL,
        pool text NOT NULL,
        county text NOT NULL,
        school_code text NOT NULL,
        school_type text NOT NULL,
        on_roster boolean NOT NULL,
        registered boolean NOT NULL,
        covered boolean NOT NULL,
        as_of timestamptz NOT NULL,
        source_partition integer NOT NULL,
        source_offset bigint NOT NULL,
        PRIMARY KEY (person_key, coverage_year, pool)
    );
    CREATE VIEW coverage_figures AS
        SELECT coverage_year, pool, county, school_code, school_type,
               count(*) FILTER (WHERE on_roster) AS on_roster,
               count(*) FILTER (WHERE on_roster AND registered) AS registered,
               count(*) FILTER (WHERE on_roster AND covered) AS covered
        FROM coverage_current
        GROUP BY coverage_year, pool, county, school_code, school_type;
    CREATE VIEW open_alert_figures AS
        SELECT coverage_year, pool, county, school_code, school_type, kind, count(*) AS open
        FROM alert_current WHERE status = 'OPEN'
        GROUP BY coverage_year, pool, county, school_code, school_type, kind;
    """,
    # 2: how far the sink has read each topic partition, committed with the rows it wrote
    """
    CREATE TABLE sink_position (
        topic text NOT NULL,
        partition integer NOT NULL,
        next_offset bigint NOT NULL,
        PRIMARY KEY (topic, partition)
    );
    """,
]

_UPSERT_ALERT = """
INSERT INTO alert_current AS a (alert_id, kind, status, person_key, masked_id, coverage_year, pool, county,
    school_code, school_type, student_ref, severity, as_of, record, source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s)
ON CONFLICT (alert_id) DO UPDATE SET
    kind = excluded.kind, status = excluded.status, person_key = excluded.person_key,
    masked_id = excluded.masked_id, coverage_year = excluded.coverage_year, pool = excluded.pool,
    county = excluded.county, school_code = excluded.school_code, school_type = excluded.school_type,
    student_ref = excluded.student_ref, severity = excluded.severity, as_of = excluded.as_of,
    record = excluded.record, source_partition = excluded.source_partition, source_offset = excluded.source_offset
WHERE (a.source_partition, a.source_offset) < (excluded.source_partition, excluded.source_offset)
"""

_INSERT_TRANSITION = """
INSERT INTO alert_transition (alert_id, record_digest, kind, status, coverage_year, pool, county, as_of, record,
    source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s)
ON CONFLICT DO NOTHING
"""

_INSERT_COVERAGE_TRANSITION = """
INSERT INTO coverage_transition (person_key, coverage_year, pool, record_digest, as_of, record, source_partition,
    source_offset)
VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s)
ON CONFLICT DO NOTHING
"""

_UPSERT_POSITION = """
INSERT INTO sink_position AS p (topic, partition, next_offset) VALUES (%s, %s, %s)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = greatest(p.next_offset, excluded.next_offset)
"""

_UPSERT_COVERAGE = """
INSERT INTO coverage_current AS c (person_key, coverage_year, pool, county, school_code, school_type, on_roster,
    registered, covered, as_of, source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s)
ON CONFLICT (person_key, coverage_year, pool) DO UPDATE SET
    county = excluded.county, school_code = excluded.school_code, school_type = excluded.school_type,
    on_roster = excluded.on_roster, registered = excluded.registered, covered = excluded.covered,
    as_of = excluded.as_of, source_partition = excluded.source_partition, source_offset = excluded.source_offset
WHERE (c.source_partition, c.source_offset) < (excluded.source_partition, excluded.source_offset)
"""


@dataclass
class SinkCounts:
    alerts: int = 0
    coverage: int = 0


TopicPosition = tuple[str, int]  # (topic, partition)


class SchemaDamaged(InputError):
    """Some of the sink's tables are gone but not all: rebuilding would leave the rest inconsistent."""


R = TypeVar("R", AlertRecord, CoverageRecord)


def storable(record: R) -> R:
    """The record with every NUL character replaced by U+FFFD: PostgreSQL refuses NUL in text and jsonb,
    and one such record would stop the sink for good. Connectors never let NUL through, but a topic can
    be written by anyone with access to it."""
    if b"\\u0000" not in to_json_line(record):
        return record
    return type(record).model_validate(_without_nul(record.model_dump()))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {key: _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


class PostgresSink:
    """One connection, one PostgreSQL schema; ``migrate`` before the first ``write``."""

    def __init__(self, dsn: str, schema: str = "enrollbridge") -> None:
        self.schema = schema
        # Named, so that an operator (and the tests) can find the sink's backend in pg_stat_activity.
        self.connection = connect(dsn, application_name=f"enrollbridge-sink {schema}")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PostgresSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Create the schema and apply the migrations not yet applied (serialised by a lock); the version.
        After the schema was dropped this builds it anew, empty, with no positions."""
        schema = sql.Identifier(self.schema)
        with self.connection.transaction():
            self.connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"enrollbridge {self.schema}",))
            self.connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            self.connection.execute(sql.SQL("SET search_path TO {}").format(schema))
            self.connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = self.connection.execute("SELECT max(version) FROM schema_version").fetchone()
            version = (row[0] if row else None) or 0
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                self.connection.execute(migration)
                self.connection.execute("INSERT INTO schema_version VALUES (%s)", (number,))
                version = number
            missing = self.connection.execute(
                "SELECT string_agg(name, ', ' ORDER BY name) FROM unnest(%s::text[]) AS name "
                "WHERE to_regclass(quote_ident(current_schema()) || '.' || name) IS NULL",
                (list(SINK_TABLES),),
            ).fetchone()
        self.connection.commit()
        if missing and missing[0]:
            raise SchemaDamaged(
                f"PostgreSQL schema {self.schema!r} lacks the tables {missing[0]} although its schema_version says "
                f"{version}: drop the schema (the sink then rebuilds it from the topics) or restore it"
            )
        return version

    def positions(self) -> dict[TopicPosition, int]:
        """The next offset to read per (topic, partition), as committed with the rows."""
        with self.connection.transaction():
            rows = self.connection.execute("SELECT topic, partition, next_offset FROM sink_position").fetchall()
        self.connection.commit()
        return {(topic, partition): next_offset for topic, partition, next_offset in rows}

    def write(
        self,
        alerts: Iterable[tuple[Position, AlertRecord]] = (),
        coverage: Iterable[tuple[Position, CoverageRecord]] = (),
        positions: Mapping[TopicPosition, int] | None = None,
    ) -> SinkCounts:
        """Write a batch in one transaction: all of it or nothing, with the ``positions`` it got to."""
        counts = SinkCounts()
        with self.connection.transaction(), self.connection.cursor() as cursor:
            alert_rows, transition_rows = [], []
            for (partition, offset), record in alerts:
                alert = storable(record)
                line = to_json_line(alert)
                details = alert.details
                alert_rows.append((
                    alert.alert_id, alert.kind, alert.status, alert.person_key, details.masked_id,
                    alert.coverage_year, alert.pool, details.county, details.school_code, details.school_type,
                    details.student_ref, alert.severity, alert.as_of, line.decode(), partition, offset,
                ))  # fmt: skip
                transition_rows.append((
                    alert.alert_id, hashlib.sha256(line).hexdigest(), alert.kind, alert.status,
                    alert.coverage_year, alert.pool, details.county, alert.as_of, line.decode(), partition, offset,
                ))  # fmt: skip
            cursor.executemany(_UPSERT_ALERT, alert_rows)
            cursor.executemany(_INSERT_TRANSITION, transition_rows)
            coverage = [(position, storable(record)) for position, record in coverage]
            coverage_rows = [
                (r.person_key, r.coverage_year, r.pool, r.county, r.school_code, r.school_type, r.on_roster,
                 r.registered, r.covered, r.as_of, partition, offset)
                for (partition, offset), r in coverage
            ]  # fmt: skip
            cursor.executemany(_UPSERT_COVERAGE, coverage_rows)
            history = []
            for (partition, offset), r in coverage:
                line = to_json_line(r)
                history.append((r.person_key, r.coverage_year, r.pool, hashlib.sha256(line).hexdigest(), r.as_of,
                                line.decode(), partition, offset))  # fmt: skip
            cursor.executemany(_INSERT_COVERAGE_TRANSITION, history)
            cursor.executemany(
                _UPSERT_POSITION,
                [(topic, partition, offset) for (topic, partition), offset in (positions or {}).items()],
            )
            counts.alerts, counts.coverage = len(alert_rows), len(coverage_rows)
        self.connection.commit()
        return counts


SINK_TABLES = ("alert_current", "alert_transition", "coverage_current", "coverage_transition", "sink_position")
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 30.0  # seconds between attempts: doubling up to the maximum
IDLE_PROBE_SECONDS = 5.0  # with nothing to write, how often to check that the connection and tables are there


def _say(line: str) -> None:
    click.echo(f"sink: {line}", err=True)


async def run_sink(settings: Settings, stop: asyncio.Event | None = None, notice: Callable[[str], None] = _say) -> None:
    """Consume the alerts and coverage topics into PostgreSQL until ``stop`` is set (or forever).

    Each batch and the positions it reached are one transaction; the consumer reads from those
    positions. A lost connection is retried with backoff (``notice`` says so, one line each); tables
    that are gone are rebuilt from the beginning of the topics."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.errors import KafkaError

    from infra.kafka import aiokafka_options, start_client

    if settings.pg_dsn is None:
        raise InputError("no PostgreSQL configured: set ENROLLBRIDGE_PG_DSN (e.g. postgresql://user@host/db)")
    dsn = settings.pg_dsn.get_secret_value()
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # a lost connection is said once, below
    topics = Topics(settings.topic_prefix)
    sink: PostgresSink | None = PostgresSink(dsn, settings.pg_schema)
    assert sink is not None
    sink.migrate()
    stored = sink.positions()
    expected: dict[TopicPartition, int] = {}  # the next offset to write, per assigned partition
    sought: set[TopicPartition] = set()  # moved back to ``expected`` once already

    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings), group_id=f"{settings.app_id}-postgres-sink", enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )  # fmt: skip

    async def move_to_stored(partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        beginnings = await consumer.beginning_offsets(partitions) if partitions else {}
        for tp in partitions:
            position = stored.get((tp.topic, tp.partition))
            # Nothing stored (a new or rebuilt schema): from the first offset the topic still holds.
            expected[tp] = beginnings[tp] if position is None else max(position, beginnings[tp])
            consumer.seek(tp, expected[tp])

    class FromStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            for tp in revoked:
                expected.pop(tp, None)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            nonlocal stored
            if sink is not None:
                # Another sink of the group may have moved these partitions on; if PostgreSQL does not
                # answer now, the loop reconnects, reloads and moves every partition again.
                with contextlib.suppress(psycopg.Error):
                    stored = sink.positions()
            await move_to_stored(assigned)

    consumer.subscribe([topics.alerts, topics.coverage], listener=FromStoredPositions())
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all")
    await start_client(consumer, settings)
    await start_client(producer, settings)
    delay = RECONNECT_FIRST
    next_probe = time.monotonic() + IDLE_PROBE_SECONDS
    try:
        while stop is None or not stop.is_set():
            if sink is None:
                try:
                    sink = PostgresSink(dsn, settings.pg_schema)
                    sink.migrate()
                    stored = sink.positions()
                except (PostgresUnavailable, psycopg.OperationalError) as error:
                    if sink is not None:
                        sink.close()
                    sink = None
                    notice(f"{one_line(error, dsn)}; trying again in {delay:g} s")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
                    continue
                notice(f"connected to PostgreSQL again; reading on from the positions stored in {settings.pg_schema}")
                delay = RECONNECT_FIRST
                await move_to_stored(consumer.assignment())
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            alerts: list[tuple[Position, AlertRecord]] = []
            coverage: list[tuple[Position, CoverageRecord]] = []
            reached: dict[TopicPosition, int] = {}
            for tp, records in batches.items():
                if tp not in expected:
                    continue  # revoked while the batch was fetched
                want = expected[tp]
                records = [record for record in records if record.offset >= want]
                if not records:
                    continue  # already in the tables
                if records[0].offset > want and tp not in sought:
                    consumer.seek(tp, want)  # Kafka started elsewhere (its committed offset): go back
                    sought.add(tp)
                    continue
                sought.discard(tp)  # (still ahead after going back: the log has a gap there)
                for record in records:
                    wanted = "AlertRecord" if tp.topic == topics.alerts else "CoverageRecord"
                    try:
                        decoded = decode_message(record.value, (wanted,))
                    except UndecodableMessage as error:
                        letter = DeadLetter(
                            source="postgres-sink", origin=f"{tp.topic}[{tp.partition}]@{record.offset}",
                            topic=tp.topic, partition=tp.partition, offset=record.offset, error_code=error.code,
                            message=str(error), record={"size": str(len(record.value or b""))},
                        )  # fmt: skip
                        await producer.send_and_wait(topics.dead_letters, encode_message(letter), key=b"sink")
                        continue
                    if isinstance(decoded, AlertRecord):
                        alerts.append(((tp.partition, record.offset), decoded))
                    elif isinstance(decoded, CoverageRecord):
                        coverage.append(((tp.partition, record.offset), decoded))
                reached[tp.topic, tp.partition] = records[-1].offset + 1
            try:
                if reached:
                    sink.write(alerts, coverage, reached)
                elif time.monotonic() >= next_probe:
                    sink.positions()  # idle: are the connection and the tables still there?
                else:
                    continue
                next_probe = time.monotonic() + IDLE_PROBE_SECONDS
            except psycopg.OperationalError as error:  # the connection dropped (AdminShutdown, a restart, ...)
                sink.close()
                sink = None
                notice(f"lost PostgreSQL ({type(error).__name__}: {one_line(error, dsn)}); reconnecting")
                continue
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                # The tables (and the positions with them) are gone: the new connection builds them anew, and
                # with no positions stored every partition is read again from its beginning.
                notice(f"the tables in {settings.pg_schema} are gone: rebuilding them from the beginning of the topics")
                sink.close()
                sink = None
                continue
            if not reached:
                continue
            stored.update(reached)
            for (topic, partition), offset in reached.items():
                expected[TopicPartition(topic, partition)] = offset
            with contextlib.suppress(KafkaError):  # only for lag monitoring: the positions are in PostgreSQL
                await consumer.commit({TopicPartition(t, p): o for (t, p), o in reached.items()})
    finally:
        await consumer.stop()
        await producer.stop()
        if sink is not None:
            sink.close()
