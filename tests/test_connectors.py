"""File connectors (SPEC section 3): validation with one dead-letter code per rule, headers, formats,
and the accounting promise: every record read is exactly one event or one dead letter."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.identity import Secret, person_key
from connectors.ingest import IngestSummary, ingest_files
from connectors.records import RECORD_TYPES
from infra.errors import InputError
from schemas.models import DeadLetter, SourceEvent
from schemas.times import parse_instant
from tests.conftest import TEST_SECRET
from tests.files import GOOD_ROWS, STUDENT, valid_number, write_csv, write_jsonl, write_xlsx

SECRET = Secret(TEST_SECRET.encode())


class Collected:
    def __init__(self) -> None:
        self.events: list[SourceEvent] = []
        self.dead: list[DeadLetter] = []


def ingest(source: str, *paths: Path, encoding: str | None = None) -> tuple[IngestSummary, Collected]:
    collected = Collected()
    summary = ingest_files(
        source, list(paths), SECRET, collected.events.append, collected.dead.append, encoding=encoding, progress=False
    )
    return summary, collected


def one_row(tmp_path: Path, source: str, **changes: Any) -> tuple[IngestSummary, Collected]:
    row = {**GOOD_ROWS[source], **changes}
    return ingest(source, write_csv(tmp_path / f"{source}.csv", [row], header=list(GOOD_ROWS[source])))


@pytest.mark.parametrize("source", list(GOOD_ROWS))
def test_a_good_row_of_each_source_becomes_one_event(tmp_path: Path, source: str) -> None:
    summary, got = one_row(tmp_path, source)
    assert (summary.read, summary.accepted, summary.rejected) == (1, 1, 0)
    [event] = got.events
    assert event.person_key == person_key(GOOD_ROWS[source]["id_number"], SECRET)
    assert event.masked_id == GOOD_ROWS[source]["id_number"][:6] + "********" + GOOD_ROWS[source]["id_number"][-4:]


BAD_ROWS = [
    ("education", {"id_number": STUDENT[:17] + "1"}, "BAD_CHECK_CHARACTER", "id_number"),
    ("education", {"id_number": valid_number(born="20151331")}, "BAD_BIRTH_DATE", "id_number"),
    ("education", {"id_number": valid_number(born="20240101")}, "BAD_BIRTH_DATE", "id_number"),  # born after the record
    ("education", {"id_number": "45020220150607"}, "BAD_ID_FORMAT", "id_number"),
    ("education", {"school_type": "NURSERY"}, "UNKNOWN_ENUM", "school_type"),
    ("education", {"action": "TRANSFERRED"}, "UNKNOWN_ENUM", "action"),
    ("education", {"school_region": "45020"}, "BAD_REGION", "school_region"),
    ("education", {"school_region": "990202"}, "BAD_REGION", "school_region"),
    ("education", {"occurred_at": "2023-09-31 08:00:00"}, "BAD_TIME", "occurred_at"),
    ("education", {"student_ref": ""}, "MISSING_FIELD", "student_ref"),
    ("insurance", {"insurance_type": "391"}, "UNKNOWN_ENUM", "insurance_type"),
    ("insurance", {"coverage_year": "24"}, "BAD_YEAR", "coverage_year"),
    ("insurance", {"region": "4502o2"}, "BAD_REGION", "region"),
    ("insurance", {"enrollment_ref": "  "}, "MISSING_FIELD", "enrollment_ref"),
    ("tax", {"amount": "380.001"}, "BAD_AMOUNT", "amount"),
    ("tax", {"amount": "三百八十"}, "BAD_AMOUNT", "amount"),
    ("tax", {"amount": "-380.00"}, "NEGATIVE_AMOUNT", "amount"),
    ("tax", {"action": "PAYED"}, "UNKNOWN_ENUM", "action"),
    ("tax", {"occurred_at": "yesterday"}, "BAD_TIME", "occurred_at"),
    ("hardship", {"category": "POOR"}, "UNKNOWN_ENUM", "category"),
    ("hardship", {"valid_from": "2023/01/01"}, "BAD_DATE", "valid_from"),
    ("hardship", {"valid_to": "2022-12-31"}, "BAD_DATE", "valid_to"),  # before valid_from
    ("hardship", {"approval_region": ""}, "MISSING_FIELD", "approval_region"),
]


@pytest.mark.parametrize(("source", "changes", "code", "field"), BAD_ROWS)
def test_each_validation_rule_dead_letters_its_bad_row(
    tmp_path: Path, source: str, changes: dict[str, str], code: str, field: str
) -> None:
    summary, got = one_row(tmp_path, source, **changes)
    assert (summary.read, summary.accepted, summary.rejected) == (1, 0, 1)
    [dead] = got.dead
    assert (dead.error_code, dead.field, dead.source) == (code, field, source)
    assert dead.file == str(tmp_path / f"{source}.csv") and dead.line == 2 and dead.origin.endswith(".csv:2")
    assert field in dead.message
    raw = {**GOOD_ROWS[source], **changes}["id_number"]
    assert dead.record["id_number"] == (raw[:6] + "*" * (len(raw) - 10) + raw[-4:])
    assert "name" not in dead.record
    assert raw not in dead.model_dump_json()


def test_a_missing_required_key_in_json_lines_is_dead_lettered(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD_ROWS["tax"].items() if k != "payment_ref"}
    _, got = ingest("tax", write_jsonl(tmp_path / "tax.jsonl", [row]))
    assert [(d.error_code, d.field, d.line) for d in got.dead] == [("MISSING_FIELD", "payment_ref", 1)]


def test_all_problems_of_a_row_are_listed(tmp_path: Path) -> None:
    _, got = one_row(tmp_path, "tax", amount="-1", region="x", action="?")
    [dead] = got.dead
    assert [(e.field, e.code) for e in dead.errors] == [
        ("amount", "NEGATIVE_AMOUNT"),
        ("region", "BAD_REGION"),
        ("action", "UNKNOWN_ENUM"),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"insurance_type": "390"}, "insurance_type", "RESIDENT"),
        ({"insurance_type": "310"}, "insurance_type", "EMPLOYEE"),
        ({"insurance_type": " resident "}, "insurance_type", "RESIDENT"),
        ({"occurred_at": "2023-09-05 10:00:00"}, "occurred_at", parse_instant("2023-09-05T10:00:00+08:00")),
        ({"occurred_at": "2023-09-05T02:00:00Z"}, "occurred_at", parse_instant("2023-09-05T10:00:00+08:00")),
        ({"occurred_at": "2023-09-05"}, "occurred_at", parse_instant("2023-09-05T00:00:00+08:00")),
    ],
)
def test_accepted_forms_of_registration_fields(tmp_path: Path, changes: dict[str, str], field: str, value: Any) -> None:
    _, got = one_row(tmp_path, "insurance", **changes)
    assert getattr(got.events[0], field) == value


@pytest.mark.parametrize(("amount", "fen"), [("380", 38000), ("380.5", 38050), ("380.05", 38005), ("0", 0)])
def test_amounts_in_yuan_become_integer_fen(tmp_path: Path, amount: str, fen: int) -> None:
    _, got = one_row(tmp_path, "tax", amount=amount)
    assert got.events[0].amount_fen == fen  # type: ignore[union-attr]


def test_chinese_headers_are_accepted(tmp_path: Path) -> None:
    model = RECORD_TYPES["education"]
    chinese = {
        name: (model.HEADERS.get(name) or {"id_number": ("身份证号",), "name": ("姓名",)}[name])[0]
        for name in GOOD_ROWS["education"]
    }
    row = {chinese[k]: v for k, v in GOOD_ROWS["education"].items()}
    summary, got = ingest("education", write_csv(tmp_path / "roster.csv", [row]))
    assert summary.accepted == 1 and got.events[0].school_code == "4502020001"  # type: ignore[union-attr]


def test_xlsx_with_typed_cells(tmp_path: Path) -> None:
    rows = [
        {**GOOD_ROWS["tax"], "amount": 380, "coverage_year": 2024, "occurred_at": datetime(2023, 12, 31, 23, 30)},
        {**GOOD_ROWS["tax"], "payment_ref": "PJ-0002", "id_number": 450202201506071234},  # a number: digits lost
    ]
    summary, got = ingest("tax", write_xlsx(tmp_path / "tax.xlsx", rows))
    assert (summary.read, summary.accepted, summary.rejected) == (2, 1, 1)
    assert got.events[0].occurred_at == parse_instant("2023-12-31T23:30:00+08:00")
    assert got.events[0].amount_fen == 38000  # type: ignore[union-attr]
    assert (got.dead[0].error_code, got.dead[0].line) == ("BAD_ID_FORMAT", 3)


def test_gb18030_csv_as_excel_in_china_writes_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "roster.csv", [GOOD_ROWS["education"]], encoding="gb18030")
    summary, got = ingest("education", path)
    assert summary.accepted == 1 and got.events[0].school_name == "城中区第1小学"  # type: ignore[union-attr]


def test_json_lines_with_bad_json_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "tax.jsonl"
    path.write_text('{"id_number": "x"\n\n[1, 2]\n' + __import__("orjson").dumps(GOOD_ROWS["tax"]).decode() + "\n")
    summary, got = ingest("tax", path)
    assert (summary.read, summary.accepted, summary.rejected, summary.files[0].blank_lines) == (3, 1, 2, 1)
    assert [(d.error_code, d.line) for d in got.dead] == [("BAD_JSON", 1), ("BAD_JSON", 3)]


def test_a_row_with_more_cells_than_the_header_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "tax.csv"
    header = ",".join(GOOD_ROWS["tax"])
    path.write_text(header + "\n" + ",".join(GOOD_ROWS["tax"].values()) + ",surplus\n", encoding="utf-8")
    _, got = ingest("tax", path)
    assert [(d.error_code, d.line) for d in got.dead] == [("BAD_ROW", 2)]


def test_fifteen_digit_numbers_join_their_eighteen_digit_twins(tmp_path: Path) -> None:
    roster = write_csv(tmp_path / "roster.csv", [{**GOOD_ROWS["education"], "id_number": STUDENT}])
    tax = write_csv(tmp_path / "tax.csv", [{**GOOD_ROWS["tax"], "id_number": STUDENT[:6] + STUDENT[8:17]}])
    _, roster_events = ingest("education", roster)
    _, tax_events = ingest("tax", tax)
    assert roster_events.events[0].person_key == tax_events.events[0].person_key == person_key(STUDENT, SECRET)


def test_identity_numbers_inside_references_are_masked(tmp_path: Path) -> None:
    _, got = one_row(tmp_path, "education", student_ref="G" + GOOD_ROWS["education"]["id_number"])
    assert got.events[0].student_ref == "G450202********" + GOOD_ROWS["education"]["id_number"][-4:]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("身份证号,缴费年度\n", "missing columns occurred_at, amount, region, action, payment_ref"),
        ("", "empty file"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "tax.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        ingest("tax", path)


def test_no_record_is_processed_when_any_file_cannot_be_used(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", [GOOD_ROWS["tax"]])
    with pytest.raises(InputError, match=r"missing\.csv"):
        ingest("tax", good, tmp_path / "missing.csv")


def test_unknown_file_type_and_broken_workbook(tmp_path: Path) -> None:
    (tmp_path / "tax.txt").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        ingest("tax", tmp_path / "tax.txt")
    (tmp_path / "tax.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable XLSX"):
        ingest("tax", tmp_path / "tax.xlsx")


printable = st.characters(blacklist_categories=("Cc", "Cs"))  # what a spreadsheet cell can hold
cells = st.one_of(
    st.none(),
    st.text(printable, max_size=25),
    st.sampled_from(["2024", "380.00", "-1", "450202", "PAID", "REFUNDED", "2023-12-31 10:00"]),
    st.just(valid_number()),
    st.integers(-10, 10**18),
    st.floats(allow_nan=False),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({name: cells for name in GOOD_ROWS["tax"]}), min_size=1, max_size=10))
def test_every_row_read_is_exactly_one_event_or_one_dead_letter(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    for index, path in enumerate(
        (
            write_jsonl(tmp_path / "t.jsonl", rows),
            write_csv(tmp_path / "t.csv", rows),
            write_xlsx(tmp_path / "t.xlsx", rows),
        )
    ):
        summary, got = ingest("tax", path)
        assert summary.read == summary.accepted + summary.rejected, index
        assert (summary.accepted, summary.rejected) == (len(got.events), len(got.dead))
        assert summary.read + summary.files[0].blank_lines == len(rows)
