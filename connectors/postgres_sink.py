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
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql

from infra.errors import InputError
from infra.postgres import connect
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


class PostgresSink:
    """One connection, one PostgreSQL schema; ``migrate`` before the first ``write``."""

    def __init__(self, dsn: str, schema: str = "enrollbridge") -> None:
        self.schema = schema
        self.connection = connect(dsn)
        self.connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        self.connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PostgresSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Apply the migrations not yet applied (one transaction each, serialised by a lock); the version."""
        with self.connection.transaction():
            self.connection.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            self.connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = self.connection.execute("SELECT max(version) FROM schema_version").fetchone()
            version = (row[0] if row else None) or 0
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                self.connection.execute(migration)
                self.connection.execute("INSERT INTO schema_version VALUES (%s)", (number,))
                version = number
        self.connection.commit()
        return version

    def write(
        self,
        alerts: Iterable[tuple[Position, AlertRecord]] = (),
        coverage: Iterable[tuple[Position, CoverageRecord]] = (),
    ) -> SinkCounts:
        """Write a batch in one transaction: all of it or nothing."""
        counts = SinkCounts()
        with self.connection.transaction(), self.connection.cursor() as cursor:
            alert_rows, transition_rows = [], []
            for (partition, offset), alert in alerts:
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
            coverage = list(coverage)
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
            counts.alerts, counts.coverage = len(alert_rows), len(coverage_rows)
        self.connection.commit()
        return counts


async def run_sink(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consume the alerts and coverage topics into PostgreSQL until ``stop`` is set (or forever).
    Offsets are committed after the database commit: at-least-once, made harmless by the positions."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from infra.kafka import aiokafka_options, start_client

    if settings.pg_dsn is None:
        raise InputError("no PostgreSQL configured: set ENROLLBRIDGE_PG_DSN (e.g. postgresql://user@host/db)")
    topics = Topics(settings.topic_prefix)
    sink = PostgresSink(settings.pg_dsn.get_secret_value(), settings.pg_schema)
    sink.migrate()
    consumer = AIOKafkaConsumer(
        topics.alerts, topics.coverage, **aiokafka_options(settings), group_id=f"{settings.app_id}-postgres-sink",
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )  # fmt: skip
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all")
    await start_client(consumer, settings)
    await start_client(producer, settings)
    try:
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            alerts: list[tuple[Position, AlertRecord]] = []
            coverage: list[tuple[Position, CoverageRecord]] = []
            for tp, records in batches.items():
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
            if batches:
                sink.write(alerts, coverage)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        sink.close()
