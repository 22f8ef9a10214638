"""Outreach work lists: every open alert once in its county's list (and its school's, and its agency's),
CSV and XLSX, counties and schools by name, kinds in Chinese and English, no names of people and no raw
identity numbers; from a file or from PostgreSQL. The XLSX works in Excel: amounts are numbers that
sum, times are dates in China Standard Time, header frozen, autofilter, a sheet per school. Nothing an
agency typed can become a formula, and no code can put a file outside the output folder."""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pytest
from openpyxl.utils import get_column_letter

from connectors.postgres_sink import PostgresSink
from enrollbridge.names import KIND_NAMES, SchoolNames, region_label, region_name
from enrollbridge.sheets import csv_value
from enrollbridge.worklist import AGENCIES, COLUMNS, write_worklists
from schemas.models import AlertRecord
from schemas.times import CST
from tests.cli import enrollbridge
from tests.conftest import PG_DSN
from tests.live import Season

HEADERS = {column.header: column.key for column in COLUMNS}


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


@pytest.fixture(scope="module")
def lists(season: tuple[Season, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, alerts = season
    out = tmp_path_factory.mktemp("lists")
    run = enrollbridge("worklist", alerts, "--events", data.folder / "education.events.jsonl", "--out", out)
    assert run.returncode == 0, run.stderr
    return out


def _open(alerts: Path) -> dict[str, AlertRecord]:
    latest: dict[str, AlertRecord] = {}
    for line in alerts.read_bytes().splitlines():
        record = AlertRecord.model_validate_json(line)
        latest[record.alert_id] = record
    return {alert_id: a for alert_id, a in latest.items() if a.status == "OPEN"}


def _csv_rows(folder: Path, prefix: str) -> list[dict[str, str]]:
    rows = []
    for path in sorted(folder.glob(f"{prefix}-*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as source:
            rows += [{HEADERS[k]: v for k, v in row.items()} for row in csv.DictReader(source)]
    return rows


def _school_names(data: Season) -> SchoolNames:
    return SchoolNames.from_event_files([data.folder / "education.events.jsonl"])


def test_every_open_alert_is_listed_once_under_its_county_and_school(season: tuple[Season, Path], lists: Path) -> None:
    data, alerts = season
    expected = _open(alerts)
    schools = _school_names(data)
    county_rows = _csv_rows(lists, "county")
    assert sorted(row["alert_id"] for row in county_rows) == sorted(expected)
    for row in county_rows:
        alert = expected[row["alert_id"]]
        assert row["county"] == region_label(alert.details.county)
        assert row["county"] == f"{region_name(alert.details.county)} {alert.details.county}"  # 柳城县 450222
        assert (row["kind_zh"], row["kind_en"]) == KIND_NAMES[alert.kind]
        assert row["masked_id"] == alert.details.masked_id and "*" in row["masked_id"]
        assert row["next_step_zh"] and row["next_step_en"]
        if alert.details.school_code:
            name = schools.name(alert.details.school_code)
            assert name and row["school"] == f"{name} {alert.details.school_code}"
    school_rows = _csv_rows(lists, "school")
    assert sorted(r["alert_id"] for r in school_rows) == sorted(a for a, x in expected.items() if x.details.school_code)
    not_enrolled = [r for r in school_rows if r["kind_en"] == "Not enrolled"]
    assert not_enrolled and all(r["student_ref"] and r["school_type"] for r in not_enrolled)
    assert {r["school_type"] for r in not_enrolled} <= {"幼儿园", "小学", "初中", "高中", "中等职业学校", "技工学校",
                                                       "特殊教育学校", "高等学校", "科研院所"}  # fmt: skip
    unpaid = [r for r in county_rows if r["kind_en"] == "Registered, not paid"]
    assert unpaid and all(r["enrollment_refs"] and r["expected_yuan"] for r in unpaid)


def test_each_agency_gets_the_kinds_it_must_act_on(season: tuple[Season, Path], lists: Path) -> None:
    _, alerts = season
    expected = _open(alerts)
    for agency, (_, kinds) in AGENCIES.items():
        rows = _agency_rows(lists, agency)
        assert sorted(r["alert_id"] for r in rows) == sorted(a for a, x in expected.items() if x.kind in kinds)
        assert all(r["next_step_zh"] and r["next_step_en"] for r in rows)
    assert _agency_rows(lists, "insurance") and _agency_rows(lists, "tax") and _agency_rows(lists, "schools")


def _agency_rows(folder: Path, agency: str) -> list[dict[str, str]]:
    with (folder / f"agency-{agency}.csv").open(encoding="utf-8-sig", newline="") as source:
        return [{HEADERS[k]: v for k, v in row.items()} for row in csv.DictReader(source)]


def test_the_xlsx_amounts_sum_in_excel_and_times_are_china_standard_time(
    season: tuple[Season, Path], lists: Path
) -> None:
    _, alerts = season
    expected = _open(alerts)
    paid_fen = expected_fen = 0
    rows_seen = 0
    for path in sorted(lists.glob("county-*.xlsx")):
        sheet = openpyxl.load_workbook(path).worksheets[0]
        header = [cell.value for cell in sheet[1]]
        paid, owed, when, ident = (
            header.index(h) + 1 for h in ("已缴（元）", "应缴（元）", "预警时间（北京时间）", "预警编号")
        )
        last = get_column_letter(len(COLUMNS))
        assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:{last}{sheet.max_row}"
        assert all(sheet.column_dimensions[letter].width > 8 for letter in "ADFP")
        for row in range(2, sheet.max_row + 1):
            rows_seen += 1
            alert = expected[str(sheet.cell(row, ident).value)]
            for column, fen in ((paid, alert.details.paid_fen), (owed, alert.details.expected_fen)):
                cell = sheet.cell(row, column)
                if fen is None:
                    assert cell.value is None
                else:
                    assert cell.data_type == "n" and cell.number_format == "#,##0.00"
            time_cell = sheet.cell(row, when)
            assert isinstance(time_cell.value, datetime) and time_cell.is_date
            assert time_cell.value == datetime.fromtimestamp(alert.as_of / 1000, CST).replace(tzinfo=None)
        # What a clerk does in Excel: sum the column.
        paid_fen += round(sum(Decimal(str(c.value)) for (c,) in sheet.iter_rows(min_row=2, min_col=paid, max_col=paid)
                              if c.value is not None) * 100)  # fmt: skip
        expected_fen += round(sum(Decimal(str(c.value)) for (c,) in sheet.iter_rows(min_row=2, min_col=owed,
                                  max_col=owed) if c.value is not None) * 100)  # fmt: skip
    assert rows_seen == len(expected)
    assert paid_fen == sum(a.details.paid_fen or 0 for a in expected.values()) > 0
    assert expected_fen == sum(a.details.expected_fen or 0 for a in expected.values()) > 0


def test_the_county_workbook_has_a_sheet_per_school_and_matches_the_csv(
    season: tuple[Season, Path], lists: Path
) -> None:
    _, alerts = season
    expected = _open(alerts)
    for some_csv in sorted(lists.glob("county-*.csv")):
        workbook = openpyxl.load_workbook(some_csv.with_suffix(".xlsx"))
        everything = workbook.worksheets[0]
        rows = list(everything.iter_rows(values_only=True))
        assert rows[0] == tuple(column.header for column in COLUMNS)
        with some_csv.open(encoding="utf-8-sig", newline="") as source:
            as_csv = [tuple(r) for r in csv.reader(source)][1:]
        assert as_csv == [tuple(csv_value(v, c.kind) for v, c in zip(row, COLUMNS, strict=True)) for row in rows[1:]]
        schools = sorted({str(expected[str(r[-1])].details.school_code) for r in rows[1:]} - {"None"})
        assert len(workbook.sheetnames) == 1 + len(schools)
        for school, title in zip(schools, workbook.sheetnames[1:], strict=True):
            assert title.startswith(school) and len(title) <= 31  # 4502220001 柳城县第1小学
            sheet = workbook[title]
            listed = {r[-1] for r in sheet.iter_rows(min_row=2, values_only=True)}
            assert listed == {r[-1] for r in rows[1:] if expected[str(r[-1])].details.school_code == school}


def test_no_names_or_raw_identity_numbers_in_the_lists(season: tuple[Season, Path], lists: Path) -> None:
    data, _ = season
    written = b"".join(p.read_bytes() for p in lists.glob("*.csv"))
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


def test_alert_files_with_blank_lines_are_read_and_a_bad_record_names_its_field(tmp_path: Path) -> None:
    # Replay skips blank lines; the work lists refused them with "1 validation error for AlertRecord",
    # which named neither the field nor what was wrong.
    first, second = (_alert(n, school_code="4502220001", student_ref=f"XJ{n}") for n in (1, 2))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(first.model_dump_json().encode() + b"\n\n  \n" + second.model_dump_json().encode() + b"\n\n")
    run = enrollbridge("worklist", alerts, "--out", tmp_path / "lists")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("2 open alerts")
    alerts.write_bytes(first.model_dump_json().replace('"UNENROLLED"', '"NOT_A_KIND"').encode() + b"\n")
    run = enrollbridge("worklist", alerts, "--out", tmp_path / "again")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and f"{alerts}:1: not an alert record: field kind: " in run.stderr, run.stderr


@pytest.mark.parametrize("benefit_start", [3_000_000, 10**20, "11010519491231002X"])
def test_an_alert_whose_date_cannot_be_shown_is_one_line_without_the_value(
    tmp_path: Path, benefit_start: object
) -> None:
    # Days past year 9999 passed validation and ended in an OverflowError writing the lists; a text that
    # is no date was quoted back whole by the date parser's message, an identity number too.
    record = orjson.loads(_alert(1).model_dump_json())
    record["details"]["benefit_start"] = "?"
    value = str(benefit_start).encode() if isinstance(benefit_start, int) else orjson.dumps(benefit_start)
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(orjson.dumps(record).replace(b'"?"', value) + b"\n")  # 10**20 is past orjson's ints
    run = enrollbridge("worklist", alerts, "--out", tmp_path / "lists")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert f"{alerts}:1: not an alert record: field details.benefit_start: " in run.stderr
    assert "11010519491231002X" not in run.stderr


# -- hostile codes (issue 15, items 9 and 10) ----------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x","click")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\t=1+1", "\r=1+1"]


def _alert(n: int, **details: Any) -> AlertRecord:
    return AlertRecord.model_validate(
        {
            "alert_id": hashlib.sha256(f"a{n}".encode()).hexdigest(),
            "kind": "UNENROLLED",
            "status": "OPEN",
            "person_key": hashlib.sha256(f"p{n}".encode()).hexdigest(),
            "coverage_year": 2024,
            "pool": "450200",
            "as_of": "2023-10-01T00:00:00+08:00",
            "severity": "MEDIUM",
            "evidence": [],
            "details": {"county": "450222", "masked_id": "450222********0011", "school_type": "PRIMARY", **details},
        }
    )


def test_formulas_typed_by_an_agency_stay_inert_text_in_every_csv_and_xlsx(tmp_path: Path) -> None:
    alerts = [
        _alert(n, school_code=f"S{n}", student_ref=text, payment_refs=[text],
               registrations=[{"enrollment_ref": text, "insurance_type": "RESIDENT", "pool": "450200",
                               "region": "450222"}])
        for n, text in enumerate(FORMULAS)
    ]  # fmt: skip
    alerts.append(_alert(99, school_code="=1+1", student_ref="XJ1"))
    write_worklists(alerts, tmp_path)
    written = sorted(tmp_path.iterdir())
    assert any(p.suffix == ".csv" for p in written) and any(p.suffix == ".xlsx" for p in written)
    csv_cells: set[str] = set()
    xlsx_cells: set[str] = set()
    for path in written:
        if path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as source:
                for line in csv.reader(source):
                    for text in line:
                        assert not text.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")), (path.name, text)
                        csv_cells.add(text)
        else:
            for sheet in openpyxl.load_workbook(path).worksheets:
                for row in sheet.iter_rows():
                    for cell in row:
                        assert cell.data_type != "f", (path.name, cell.coordinate, cell.value)
                        if isinstance(cell.value, str) and cell.value.lstrip().startswith(("=", "+", "-", "@")):
                            assert cell.quotePrefix, (path.name, cell.coordinate)
                            xlsx_cells.add(cell.value)
    # The values are all there, as the agency typed them: inert, not lost.
    assert {"'" + text for text in FORMULAS} <= csv_cells
    assert {text for text in FORMULAS if not text.startswith(("\t", "\r"))} <= xlsx_cells


def test_bidirectional_controls_from_an_alert_file_do_not_reach_a_work_list(tmp_path: Path) -> None:
    # The connectors refuse them; an alert file made elsewhere can still hold them: in a work list they
    # would turn the code beside the name around. They are shown as U+FFFD, the rest as it was.
    alert = _alert(1, school_code="4502220001", school_name="城中\u202e1000小学", student_ref="XJ\u20661\u202e23")
    write_worklists([alert], tmp_path)
    texts: list[str] = []
    for path in sorted(tmp_path.iterdir()):
        if path.suffix == ".csv":
            texts.append(path.read_text(encoding="utf-8-sig"))
        else:
            texts.extend(str(c.value) for sheet in openpyxl.load_workbook(path).worksheets for row in sheet.iter_rows()
                         for c in row if c.value is not None)  # fmt: skip
    joined = "\n".join(texts)
    assert "\u202e" not in joined and "\u2066" not in joined
    assert "XJ\ufffd1\ufffd23" in joined


def test_report_xlsx_text_is_inert_too(tmp_path: Path) -> None:
    from enrollbridge.report import build_report, write_xlsx
    from streams.core.policy import Policy

    policy = Policy.model_validate(
        {"pool": "459900", "coverage_year": 2024, "contribution": "380.00", "collection_start": "2023-09-01",
         "collection_end": "2023-12-31", "name": "=HYPERLINK(\"http://x\")"}
    )  # fmt: skip
    write_xlsx(build_report(policy, policy.checkpoints[-1], [], []), tmp_path / "r.xlsx")
    cells = [c for s in openpyxl.load_workbook(tmp_path / "r.xlsx").worksheets for r in s.iter_rows() for c in r]
    assert not [c for c in cells if c.data_type == "f"]
    assert any(isinstance(c.value, str) and "=HYPERLINK" in c.value for c in cells)


@pytest.mark.parametrize("code", ["a/b", "..", "../../etc/x", "x\x00y", "A" * 300, "/abs", "a\\b", "CON", ".hidden"])
def test_file_names_from_codes_stay_in_the_output_folder(tmp_path: Path, code: str) -> None:
    out = tmp_path / "out"
    alerts = [_alert(1, school_code=code, student_ref="XJ1"), _alert(2, school_code="4502220001", student_ref="XJ2")]
    files = write_worklists(alerts, out)
    assert files.schools == 2 and files.rows == 2
    everything = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent == out for p in everything), everything
    assert all(len(p.name) < 120 and "\x00" not in p.name and not p.name.startswith(".") for p in everything)
    schools = sorted(p.name for p in out.glob("school-*.csv"))
    assert len(schools) == 2 and "school-4502220001.csv" in schools


def test_codes_that_clean_to_the_same_name_get_their_own_files(tmp_path: Path) -> None:
    alerts = [_alert(n, school_code=code, student_ref=f"XJ{n}") for n, code in enumerate(["a/b", "a_b", "a\\b"])]
    write_worklists(alerts, tmp_path)
    assert len(list(tmp_path.glob("school-*.csv"))) == 3


def _waiting(pool: str, year: int, lapsed: int | None, repaired: int | None) -> AlertRecord:
    from schemas.times import parse_date

    return AlertRecord(
        alert_id="0" * 64, kind="WAITING_PERIOD", status="OPEN", person_key="1" * 64, coverage_year=year, pool=pool,
        as_of=0, severity="INFO", evidence=(), details={
            "county": pool[:4] + "02", "masked_id": "450202********0011", "benefit_start": parse_date("2027-06-01"),
            "lapsed_years": lapsed, "repaired_years": repaired,
        },
    )  # fmt: skip


def test_the_next_step_of_a_waiting_period_says_its_months_and_what_a_repair_would_do() -> None:
    from enrollbridge.worklist import next_step, row_of
    from streams.core.policy import load_policies
    from tests.test_continuity import GUIYANG

    shipped = load_policies()
    zh, en = next_step(_waiting("450200", 2027, 2, 0), shipped)
    assert zh == (
        "告知家庭：待遇自 2027-06-01 起享受（等待期 5 个月，断保 2 年）；"
        "每修复缴费一年（440.00 元）缩短 1 个月，修复 2 年可缩短至 3 个月"
    )
    assert en.endswith("each year of repair payment (440.00 yuan) shortens it by 1 month(s), 2 year(s) to 3 months")
    assert next_step(_waiting("450200", 2027, 2, 2), shipped)[0].endswith("已修复 2 年）；修复缴费不能再缩短")
    # A long lapse (Guiyang-like: 3 years or more, at least 9 months, 2 months a year): repairs stop at the floor.
    zh, _ = next_step(_waiting("520100", 2029, 3, 0), load_policies(GUIYANG))
    assert zh.endswith("（等待期 9 个月，断保 3 年）；修复缴费不能再缩短")
    zh, _ = next_step(_waiting("520100", 2029, 2, 0), load_policies(GUIYANG))
    assert zh.endswith("（等待期 7 个月，断保 2 年）；每修复缴费一年（400.00 元）缩短 2 个月，修复 2 年可缩短至 3 个月")
    # Before continuity rules, the fixed months; without a policy, the date alone.
    assert next_step(_waiting("450200", 2024, None, None), shipped)[0].endswith("（等待期 3 个月）")
    assert next_step(_waiting("450300", 2027, 1, 0), shipped)[0] == "告知家庭：待遇自 2027-06-01 起享受"
    row = row_of(_waiting("450200", 2027, 2, 1), policies=shipped)
    assert (row["lapsed_years"], row["repaired_years"], row["kind_zh"]) == (2, 1, "待遇等待期（逾期缴费或断保）")
