"""Outreach work lists: every open alert once in its county's list (and its school's), CSV and XLSX,
kinds in Chinese and English, no names and no raw identity numbers; from a file or from PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest

from connectors.postgres_sink import PostgresSink
from enrollbridge.worklist import COLUMNS, KIND_NAMES
from schemas.models import AlertRecord
from tests.cli import enrollbridge
from tests.conftest import PG_DSN
from tests.live import Season


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> tuple[Season, Path]:
    season = Season(tmp_path_factory.mktemp("worklist"), 600, seed=41)
    alerts = season.folder / "alerts.jsonl"
    run = enrollbridge(
        "replay", *season.event_files, "--policy", season.folder / "policy.toml",
        "--until", season.manifest["until"], "--out", alerts,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return season, alerts


def _open(alerts: Path) -> dict[str, AlertRecord]:
    latest: dict[str, AlertRecord] = {}
    for line in alerts.read_bytes().splitlines():
        record = AlertRecord.model_validate_json(line)
        latest[record.alert_id] = record
    return {alert_id: a for alert_id, a in latest.items() if a.status == "OPEN"}


def _csv_rows(folder: Path, prefix: str) -> list[dict[str, str]]:
    rows = []
    headers = dict(COLUMNS)
    for path in sorted(folder.glob(f"{prefix}-*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as source:
            rows += [{headers[k]: v for k, v in row.items()} for row in csv.DictReader(source)]
    return rows


def test_every_open_alert_is_listed_once_under_its_county_and_school(
    season: tuple[Season, Path], tmp_path: Path
) -> None:
    _, alerts = season
    run = enrollbridge("worklist", alerts, "--out", tmp_path / "lists")
    assert run.returncode == 0, run.stderr
    expected = _open(alerts)
    county_rows = _csv_rows(tmp_path / "lists", "county")
    assert sorted(row["alert_id"] for row in county_rows) == sorted(expected)
    for row in county_rows:
        alert = expected[row["alert_id"]]
        assert row["county"] == alert.details.county
        assert (row["kind_zh"], row["kind_en"]) == KIND_NAMES[alert.kind]
        assert row["masked_id"] == alert.details.masked_id and "*" in row["masked_id"]
        assert row["next_step_zh"] and row["next_step_en"]
    school_rows = _csv_rows(tmp_path / "lists", "school")
    assert sorted(r["alert_id"] for r in school_rows) == sorted(a for a, x in expected.items() if x.details.school_code)
    not_enrolled = [r for r in school_rows if r["kind_en"] == "Not enrolled"]
    assert not_enrolled and all(r["student_ref"] and r["school_type"] for r in not_enrolled)
    unpaid = [r for r in county_rows if r["kind_en"] == "Registered, not paid"]
    assert unpaid and all(r["enrollment_refs"] and r["expected_yuan"] for r in unpaid)


def test_the_xlsx_lists_open_with_openpyxl_and_match_the_csv(season: tuple[Season, Path], tmp_path: Path) -> None:
    _, alerts = season
    assert enrollbridge("worklist", alerts, "--out", tmp_path).returncode == 0
    some_csv = sorted(tmp_path.glob("county-*.csv"))[0]
    workbook = openpyxl.load_workbook(some_csv.with_suffix(".xlsx"))
    sheet = workbook["工作清单"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == tuple(header for header, _ in COLUMNS)
    with some_csv.open(encoding="utf-8-sig", newline="") as source:
        assert [tuple(r) for r in csv.reader(source)][1:] == [tuple(v or "" for v in row) for row in rows[1:]]


def test_no_names_or_raw_identity_numbers_in_the_lists(season: tuple[Season, Path], tmp_path: Path) -> None:
    data, alerts = season
    assert enrollbridge("worklist", alerts, "--out", tmp_path).returncode == 0
    written = b"".join(p.read_bytes() for p in tmp_path.glob("*.csv"))
    with (data.folder / "education.csv").open(encoding="utf-8-sig", newline="") as source:
        people = list(csv.DictReader(source))
    id_column = next(k for k in people[0] if k in ("id_number", "身份证号"))
    name_column = next(k for k in people[0] if k in ("name", "姓名"))
    assert not any(p[id_column].encode() in written for p in people if len(p[id_column]) == 18)
    assert not any(p[name_column].encode() in written for p in people if len(p[name_column]) >= 2)


def test_the_lists_can_come_from_the_sink_tables(season: tuple[Season, Path], tmp_path: Path, pg_schema: str) -> None:
    _, alerts = season
    records = [AlertRecord.model_validate_json(line) for line in alerts.read_bytes().splitlines()]
    with PostgresSink(PG_DSN, pg_schema) as sink:
        sink.migrate()
        sink.write([((0, n), a) for n, a in enumerate(records)])
    env = {"ENROLLBRIDGE_PG_DSN": PG_DSN, "ENROLLBRIDGE_PG_SCHEMA": pg_schema}
    run = enrollbridge("worklist", "--out", tmp_path / "from-db", "--pool", "450200", "--year", 2024, env=env)
    assert run.returncode == 0, run.stderr
    from_db = sorted(r["alert_id"] for r in _csv_rows(tmp_path / "from-db", "county"))
    expected = sorted(a for a, x in _open(alerts).items() if x.pool == "450200" and x.coverage_year == 2024)
    assert from_db == expected
