"""The PostgreSQL sink against the real server: idempotent under re-delivery, figures equal to a
direct computation from the replay, and fed live from Kafka by `enrollbridge sink`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from connectors.postgres_sink import PostgresSink
from enrollbridge.history import SinkHistory
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
        assert sink.migrate() == 1
        sink.write(positioned_alerts, positioned_coverage)
    once = _dump(pg_schema)
    assert len(once["alert_transition"]) == len({(a.alert_id, orjson.dumps(a.model_dump())) for a in alerts})
    with PostgresSink(PG_DSN, pg_schema) as sink:
        assert sink.migrate() == 1  # already migrated: nothing applied twice
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
    settings = live_settings(kafka_bootstrap, tmp_path)
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
