"""Names and labels people read: GB/T 2260 region names from the shipped table, school names from the
latest roster record, Chinese labels for every enum symbol the outputs show."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrollbridge.names import (
    HARDSHIP_CATEGORY_NAMES,
    INSURANCE_TYPE_NAMES,
    KIND_NAMES,
    SCHOOL_TYPE_NAMES,
    SEVERITY_NAMES,
    STATUS_NAMES,
    SchoolNames,
    pool_label,
    region_edition,
    region_label,
    region_table,
)
from enrollbridge.synth.geography import KNOWN_COUNTIES
from schemas.codec import new_event
from schemas.models import AlertKind, AlertStatus, HardshipCategory, InsuranceType, RosterChange, SchoolType, Severity
from schemas.regions import is_region_code
from schemas.times import parse_instant


def test_the_shipped_table_is_the_ministrys_2024_edition() -> None:
    table = region_table()
    assert len(table) > 3000 and all(is_region_code(code) and name for code, name in table.items())
    assert region_edition().startswith("2024")
    assert table["450200"] == "柳州市" and table["450000"] == "广西壮族自治区"
    assert table["653228"] == "和康县"  # created in 2024: the packages on PyPI do not have it yet


def test_every_county_of_the_demo_cities_reads_as_name_and_code() -> None:
    for counties in KNOWN_COUNTIES.values():
        for code, name in counties:
            assert region_label(code) == f"{name} {code}"
    assert region_label("450222") == "柳城县 450222"


def test_an_unknown_code_is_shown_bare_never_guessed() -> None:
    assert region_label("459902") == "459902"
    assert region_label(None) == "" and region_label("") == ""
    assert pool_label("450200", "柳州") == "柳州市 450200"  # the table's name wins over the policy's
    assert pool_label("459900", "某市") == "某市 459900" and pool_label("459900") == "459900"


def test_every_symbol_has_a_chinese_and_an_english_label() -> None:
    for table, symbols in (
        (KIND_NAMES, AlertKind), (STATUS_NAMES, AlertStatus), (SEVERITY_NAMES, Severity),
        (SCHOOL_TYPE_NAMES, SchoolType), (INSURANCE_TYPE_NAMES, InsuranceType),
        (HARDSHIP_CATEGORY_NAMES, HardshipCategory),
    ):  # fmt: skip
        assert set(table) == {symbol.value for symbol in symbols}
        assert all(zh and en and zh != en for zh, en in table.values())


def _roster(school: str, name: str | None, at: str, ref: str) -> RosterChange:
    return new_event(
        RosterChange, person_key="a" * 64, occurred_at=parse_instant(at), masked_id="450222********0333",
        school_code=school, school_name=name, school_type="PRIMARY", school_region="450222", action="ENROLLED",
        student_ref=ref,
    )  # fmt: skip


def test_a_school_is_named_by_its_latest_roster_record_in_any_order() -> None:
    events = [
        _roster("4502220001", "柳城县第一小学", "2023-09-01 08:00:00", "XJ1"),
        _roster("4502220001", "柳城县实验小学", "2023-10-01 08:00:00", "XJ2"),  # renamed
        _roster("4502220001", None, "2023-11-01 08:00:00", "XJ3"),  # no name given: keeps the last one
        _roster("4502220002", "柳城县第二小学", "2023-09-01 08:00:00", "XJ4"),
    ]
    for order in (events, events[::-1]):
        names = SchoolNames().add_all(order)
        assert names.label("4502220001") == "柳城县实验小学 4502220001"
        assert names.label("4502220002") == "柳城县第二小学 4502220002"
        assert names.label("4502220003") == "4502220003" and names.label(None) == ""


def test_the_dashboard_figures_carry_names_and_chinese_labels() -> None:
    from enrollbridge.dashboard import LiveFigures
    from schemas.models import AlertRecord, CoverageRecord
    from streams.core.policy import load_policies

    policy = load_policies().get("450200", 2024)
    assert policy is not None
    figures = LiveFigures(policy)
    for n, (county, school_type) in enumerate([("450222", "SENIOR_SECONDARY"), ("450226", "KINDERGARTEN")]):
        figures.add(CoverageRecord.model_validate({
            "person_key": f"{n:064x}", "coverage_year": 2024, "pool": "450200", "county": county,
            "school_code": f"{county}0001", "school_type": school_type, "on_roster": True, "registered": True,
            "covered": n == 0, "as_of": "2023-10-01T00:00:00+08:00", "cause": "0" * 32,
        }))  # fmt: skip
    figures.add(AlertRecord.model_validate({
        "alert_id": "a" * 64, "kind": "UNPAID", "status": "OPEN", "person_key": f"{1:064x}", "coverage_year": 2024,
        "pool": "450200", "as_of": "2023-10-01T00:00:00+08:00", "severity": "MEDIUM", "evidence": [],
        "details": {"county": "450226", "masked_id": "450226********0011"},
    }))  # fmt: skip
    shown = figures.snapshot()
    assert shown["pool_name"] == "柳州市 450200 2024"
    assert [g["label"] for g in shown["by_county"]] == ["柳城县 450222", "三江侗族自治县 450226"]
    assert [g["label"] for g in shown["by_school_type"]] == ["幼儿园", "高中"]  # youngest first
    assert {k["kind"]: (k["zh"], k["open"]) for k in shown["kinds"]}["UNPAID"] == ("已登记未缴费", 1)
    assert shown["recent"] == [{
        "as_of": "2023-10-01 00:00:00", "kind": "UNPAID", "kind_zh": "已登记未缴费", "status": "OPEN",
        "status_zh": "未消除", "county": "三江侗族自治县 450226", "masked_id": "450226********0011",
    }]  # fmt: skip


def test_school_names_come_from_event_files_and_a_bad_line_is_one_clear_error(tmp_path: Path) -> None:
    from infra.errors import InputError
    from schemas.codec import to_json_line, write_event_container

    roster = _roster("4502220001", "柳城县第一小学", "2023-09-01 08:00:00", "XJ1")
    jsonl = tmp_path / "education.events.jsonl"
    jsonl.write_bytes(to_json_line(roster) + b'\n{"type":"PaymentChange","anything":1}\n')
    avro = tmp_path / "education.events.avro"
    with avro.open("wb") as out:
        write_event_container(out, [_roster("4502220002", "柳城县第二小学", "2023-09-01 08:00:00", "XJ2")])
    names = SchoolNames.from_event_files([jsonl, avro])
    assert names.name("4502220001") == "柳城县第一小学" and names.name("4502220002") == "柳城县第二小学"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"type":"RosterChange","school_code":1}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:1: not a canonical event"):
        SchoolNames.from_event_files([bad])
