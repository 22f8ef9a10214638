"""File connectors (SPEC section 3): validation with one dead-letter code per rule, headers, formats,
and the accounting promise: every record read is exactly one event or one dead letter."""

from __future__ import annotations

import csv
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.identity import Secret, person_key
from connectors.ingest import IngestSummary, ingest_files, ingest_lines
from connectors.records import RECORD_TYPES
from infra.errors import InputError
from schemas.codec import to_json_line
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
    """A file of one good row with some cells changed (or columns added after the others)."""
    row = {**GOOD_ROWS[source], **changes}
    return ingest(source, write_csv(tmp_path / f"{source}.csv", [row]))


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
    ("tax", {"amount": "92233720368547758.08"}, "BAD_AMOUNT", "amount"),  # more fen than a long holds
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


def test_identity_numbers_with_digits_run_into_them_are_masked_in_events_and_dead_letters(tmp_path: Path) -> None:
    number = GOOD_ROWS["education"]["id_number"]
    _, got = one_row(tmp_path, "education", student_ref=number + "01")
    assert got.events[0].student_ref == "450202********" + number[-4:] + "01"  # type: ignore[union-attr]
    _, got = one_row(tmp_path, "education", school_region=number + "9")
    [dead] = got.dead
    assert dead.field == "school_region" and number not in dead.model_dump_json()
    assert dead.record["school_region"] == "450202********" + number[-4:] + "9"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        # Named as the file names its columns: in Chinese when its headers are.
        (
            "身份证号,缴费年度\n",
            r"missing columns 缴费时间 \(occurred_at\), 缴费金额 \(amount\), 征收地区划代码 \(region\), "
            r"业务类型 \(action\), 票据号 \(payment_ref\)$",
        ),
        ("id_number,coverage_year,occurred_at,amount,region,action\n", r"missing column payment_ref \(票据号\)$"),
        ("", "empty file"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "tax.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        ingest("tax", path)


@pytest.mark.parametrize(
    ("header", "given"), [("amount,缴费金额", "'amount' and '缴费金额'"), ("缴费金额,缴费金额", "'缴费金额' twice")]
)
def test_a_header_that_names_a_column_twice_is_refused(tmp_path: Path, header: str, given: str) -> None:
    # Two amounts (an agency's export with a corrected column added): which one a record means is not clear.
    columns = "id_number,coverage_year,occurred_at,region,action,payment_ref"
    path = tmp_path / "tax.csv"
    path.write_text(f"{columns},{header}\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"tax\.csv:1: the header names the column amount {given}: keep one of them$"):
        ingest("tax", path)
    # A spreadsheet's header is where its first row with cells is.
    rows = [{**GOOD_ROWS["tax"], "缴费金额": "1.00"}]
    sheet = write_xlsx(tmp_path / "tax.xlsx", rows, header=[*GOOD_ROWS["tax"], "缴费金额"])
    with pytest.raises(InputError, match=r"tax\.xlsx:1: the header names the column amount 'amount' and '缴费金额'"):
        ingest("tax", sheet)


def test_a_json_record_that_gives_a_column_twice_is_a_dead_letter(tmp_path: Path) -> None:
    twice = {**GOOD_ROWS["tax"], "缴费金额": "1.00"}
    summary, got = ingest("tax", write_jsonl(tmp_path / "t.jsonl", [twice, GOOD_ROWS["tax"]]))
    assert (summary.read, summary.accepted, len(got.dead)) == (2, 1, 1)
    assert (got.dead[0].error_code, got.dead[0].line) == ("BAD_ROW", 1)
    assert got.dead[0].message.endswith("the column amount is given twice ('amount' and '缴费金额')")


def test_a_json_line_that_repeats_a_key_is_a_dead_letter(tmp_path: Path) -> None:
    # orjson keeps the last of two equal keys, silently: the line is read again to find the repeat.
    good = orjson.dumps(GOOD_ROWS["tax"])
    path = tmp_path / "t.jsonl"
    path.write_bytes(good[:-1] + b', "amount":\t"999.00"}\n' + good + b"\n")
    summary, got = ingest("tax", path)
    assert (summary.read, summary.accepted) == (2, 1)
    assert [(d.error_code, d.line) for d in got.dead] == [("BAD_ROW", 1)]
    assert got.dead[0].message.endswith("the column amount is given twice ('amount' twice)")


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


# --- cell normalisation (SPEC section 3) ----------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789X-:. ", "０１２３４５６７８９Ｘ－：．\u3000")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
WRITERS = {".csv": write_csv, ".xlsx": write_xlsx, ".jsonl": write_jsonl}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_full_width_digits_and_letters_and_ideographic_spaces_are_valid_input(tmp_path: Path, suffix: str) -> None:
    typed = {
        **GOOD_ROWS["tax"],
        "id_number": "\u3000" + STUDENT.translate(FULL_WIDTH) + "\u3000",
        "coverage_year": "２０２４",
        "amount": "３８０．００",
        "region": "４５０２０２\u3000",
        "action": "ｐａｉｄ",
        "occurred_at": "2023-09-06 10:00:00".translate(FULL_WIDTH),
        "payment_ref": "ＰＪ－０００１",
    }
    summary, got = ingest("tax", WRITERS[suffix](tmp_path / f"tax{suffix}", [typed]))
    _, plain = one_row(tmp_path, "tax", id_number=STUDENT)
    assert (summary.accepted, summary.rejected) == (1, 0)
    assert got.events == plain.events  # the same event, id and all


@pytest.mark.parametrize(
    ("column", "code"),
    [
        ("id_number", "BAD_ID_FORMAT"),
        ("amount", "BAD_AMOUNT"),
        ("coverage_year", "BAD_YEAR"),
        ("region", "BAD_REGION"),
        ("occurred_at", "BAD_TIME"),
    ],
)
def test_digits_of_other_scripts_are_dead_letters_not_crashes(tmp_path: Path, column: str, code: str) -> None:
    # Python's \d, str.isdigit() and int() take Arabic-Indic digits; NFKC keeps them as they are.
    value = GOOD_ROWS["tax"][column]
    summary, got = one_row(tmp_path, "tax", **{column: value[:2] + value[2:].translate(ARABIC_INDIC)})
    assert (summary.accepted, summary.rejected) == (0, 1)
    assert [(dead.error_code, dead.field) for dead in got.dead] == [(code, column)]


# --- identity documents (SPEC section 2) ----------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["810000201001010019", "82000020120315002X", "830000200911300030", "944840201307040058"],
    ids=["hong-kong-permit", "macao-permit", "taiwan-permit", "permanent-residence-card"],
)
def test_permits_and_permanent_residence_cards_join_like_resident_numbers(tmp_path: Path, number: str) -> None:
    (tmp_path / "a").mkdir()
    _, roster = one_row(tmp_path / "a", "education", id_number=number)
    _, tax = one_row(tmp_path, "tax", id_number=number.lower())
    assert roster.events[0].person_key == tax.events[0].person_key == person_key(number, SECRET)
    assert roster.events[0].masked_id == number[:6] + "********" + number[-4:]


def test_id_type_is_carried_as_given_and_never_changes_the_person(tmp_path: Path) -> None:
    _, plain = one_row(tmp_path, "insurance")
    _, typed = one_row(tmp_path, "insurance", id_type="  01 ")
    _, chinese = ingest(
        "insurance", write_csv(tmp_path / "i.csv", [{**GOOD_ROWS["insurance"], "证件类型": "居民身份证"}])
    )
    _, empty = one_row(tmp_path, "insurance", id_type="")
    assert typed.events[0].id_type == "01" and chinese.events[0].id_type == "居民身份证"
    assert plain.events[0].person_key == typed.events[0].person_key == chinese.events[0].person_key
    assert empty.events == plain.events  # absent and empty are the same: existing event ids stay
    _, long = one_row(tmp_path, "insurance", id_type="123456789")
    assert [(d.error_code, d.field) for d in long.dead] == [("TOO_LONG", "id_type")]


# --- new optional columns: recorded_at, purpose -----------------------------------------------------


@pytest.mark.parametrize("source", list(GOOD_ROWS))
def test_recorded_at_is_the_version_time_of_the_record(tmp_path: Path, source: str) -> None:
    _, plain = one_row(tmp_path, source)
    _, recorded = one_row(tmp_path, source, recorded_at="2024-01-03 09:00")
    _, chinese = ingest(source, write_csv(tmp_path / "c.csv", [{**GOOD_ROWS[source], "记录时间": "2024-01-03 09:00"}]))
    _, empty = one_row(tmp_path, source, recorded_at=" ")
    _, bad = one_row(tmp_path, source, recorded_at="2024-01-32")
    when = parse_instant("2024-01-03T09:00+08:00")
    assert recorded.events[0].recorded_at == chinese.events[0].recorded_at == when
    assert recorded.events[0].version_time == when
    assert plain.events[0].recorded_at is None and empty.events == plain.events
    assert [(d.error_code, d.field) for d in bad.dead] == [("BAD_TIME", "recorded_at")]


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [("REPAIR", "REPAIR"), (" repair ", "REPAIR"), ("补缴", "REPAIR"), ("修复缴费", "REPAIR"),
     ("CONTRIBUTION", "CONTRIBUTION"), ("正常缴费", "CONTRIBUTION"), ("", None)],
)  # fmt: skip
def test_the_purpose_of_a_payment(tmp_path: Path, purpose: str, expected: str | None) -> None:
    _, plain = one_row(tmp_path, "tax")
    _, got = ingest("tax", write_csv(tmp_path / "t.csv", [{**GOOD_ROWS["tax"], "缴费类型": purpose}]))
    assert got.events[0].purpose == expected  # type: ignore[union-attr]
    if expected is None:
        assert got.events == plain.events  # no purpose, the same event id as before the column existed


def test_an_unknown_purpose_is_a_dead_letter(tmp_path: Path) -> None:
    _, got = one_row(tmp_path, "tax", purpose="DONATION")
    assert [(d.error_code, d.field) for d in got.dead] == [("UNKNOWN_ENUM", "purpose")]


# --- limits, free text, control characters ----------------------------------------------------------

LIMITS = {"school_name": 128, "name": 128, "id_type": 8}  # every other column: 64 characters


@pytest.mark.parametrize("source", list(GOOD_ROWS))
def test_every_column_has_a_length_limit_and_too_long_is_a_dead_letter(tmp_path: Path, source: str) -> None:
    columns = list(RECORD_TYPES[source].model_fields)
    rows = [{**GOOD_ROWS[source], column: "1" * (LIMITS.get(column, 64) + 1)} for column in columns]
    summary, got = ingest(source, write_csv(tmp_path / f"{source}.csv", rows, header=columns))
    assert summary.accepted == 0
    assert [(d.error_code, d.field) for d in got.dead] == [("TOO_LONG", column) for column in columns]


@pytest.mark.parametrize(
    ("source", "column"),
    [("education", "school_name"), ("education", "school_code"), ("education", "student_ref"),
     ("insurance", "channel"), ("insurance", "enrollment_ref"), ("tax", "channel"), ("tax", "payment_ref"),
     ("hardship", "status_ref"), ("tax", "id_type")],
)  # fmt: skip
def test_free_text_is_accepted_up_to_its_limit(tmp_path: Path, source: str, column: str) -> None:
    text = "学" * LIMITS.get(column, 64)
    _, got = one_row(tmp_path, source, **{column: text})
    assert getattr(got.events[0], column) == text


@pytest.mark.parametrize(
    ("source", "column"),
    [("education", "school_name"), ("education", "school_code"), ("insurance", "channel"), ("tax", "channel"),
     ("hardship", "status_ref")],
)  # fmt: skip
def test_identity_numbers_typed_into_free_text_are_masked(tmp_path: Path, source: str, column: str) -> None:
    number = valid_number(sequence=77)
    full_width = number.translate(FULL_WIDTH)
    _, got = one_row(tmp_path, source, **{column: f"问{number}/{full_width}"})
    masked = number[:6] + "********" + number[-4:]
    assert getattr(got.events[0], column) == f"问{masked}/{masked}"


def test_line_breaks_and_tabs_in_a_cell_are_spaces(tmp_path: Path) -> None:
    # Excel's Alt+Enter puts a line break inside a cell; its CSV quotes it over two lines.
    summary, got = one_row(tmp_path, "education", school_name="城中区\n第1小学", student_ref="XJ\t01")
    assert summary.accepted == 1
    assert (got.events[0].school_name, got.events[0].student_ref) == ("城中区 第1小学", "XJ 01")  # type: ignore[union-attr]


# Bidirectional overrides and isolates too: in a work list they turn the school code beside a name around.
@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f", "\x9b", "\u202e", "\u2066"])
def test_other_control_characters_make_a_dead_letter_that_shows_them(tmp_path: Path, character: str) -> None:
    _, got = one_row(tmp_path, "education", school_name=f"城中区{character}第1小学")
    [dead] = got.dead
    assert (dead.error_code, dead.field) == ("BAD_CHARACTER", "school_name")
    assert f"U+{ord(character):04X}" in dead.message
    assert dead.record["school_name"] == f"城中区\\u{ord(character):04x}第1小学"


def test_a_nul_in_json_lines_is_a_dead_letter(tmp_path: Path) -> None:
    _, got = ingest("tax", write_jsonl(tmp_path / "t.jsonl", [{**GOOD_ROWS["tax"], "channel": "微信\u0000"}]))
    assert [(d.error_code, d.field) for d in got.dead] == [("BAD_CHARACTER", "channel")]
    assert "\x00" not in str(got.dead[0].model_dump())


def test_messages_name_the_column_as_the_file_does(tmp_path: Path) -> None:
    model = RECORD_TYPES["education"]
    row = {model.HEADERS.get(k, (k,))[0]: v for k, v in GOOD_ROWS["education"].items()}
    _, got = ingest("education", write_csv(tmp_path / "roster.csv", [{**row, "学籍号": ""}]))
    [dead] = got.dead
    assert dead.field == "student_ref" and dead.message == "student_ref (学籍号): required value is empty"


def test_a_quote_never_closed_is_one_dead_letter_that_names_the_lines_it_swallowed(tmp_path: Path) -> None:
    rows = [{**GOOD_ROWS["tax"], "payment_ref": f"PJ-{i}"} for i in range(20_000)]
    path = write_csv(tmp_path / "tax.csv", rows)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = lines[5].replace("微信", '"微信')  # line 6 opens a quote that nothing closes
    path.write_text("".join(lines), encoding="utf-8")
    summary, got = ingest("tax", path)
    [dead] = got.dead
    swallowed = int(dead.origin.rsplit("-", 1)[1]) - 6 + 1
    assert dead.line == 6 and dead.origin == f"{path}:6-{5 + swallowed}" and "a quote not closed" in dead.message
    assert summary.read == len(rows) - swallowed + 1 and summary.accepted == len(rows) - swallowed
    assert got.events[-1].payment_ref == "PJ-19999"  # type: ignore[union-attr]


def test_a_file_rejected_a_thousand_times_in_a_row_is_refused(tmp_path: Path) -> None:
    garbage = [{name: "x" for name in GOOD_ROWS["tax"]}] * 999
    good = write_csv(tmp_path / "mixed.csv", [*garbage, GOOD_ROWS["tax"], *garbage])
    summary, _ = ingest("tax", good)
    assert (summary.accepted, summary.rejected) == (1, 1998)
    bad = write_csv(tmp_path / "bad.csv", [GOOD_ROWS["tax"], *garbage, garbage[0], GOOD_ROWS["tax"]])
    with pytest.raises(
        InputError, match=r"bad\.csv:1002: refused after 1,001 records read, the last 1,000 all rejected"
    ):
        ingest("tax", bad)


# -- --jobs: conversion in several processes changes nothing a sink sees ------------------------------


def _ingest_jobs(source: str, paths: list[Path], jobs: int) -> tuple[str, list[bytes], list[bytes]]:
    """What a run gives: its summary, and every event and dead letter as written, in order (or the
    one error that refused the input)."""
    events: list[bytes] = []
    dead: list[bytes] = []
    try:
        summary = ingest_files(source, paths, SECRET, lambda e: events.append(to_json_line(e)),
                               lambda d: dead.append(to_json_line(d)), progress=False, jobs=jobs)  # fmt: skip
    except InputError as error:
        return f"refused: {error}", events, dead
    return repr(summary), events, dead


def _hostile_tax_rows(count: int) -> list[dict[str, str]]:
    rows = []
    for number in range(count):
        row = {**GOOD_ROWS["tax"], "payment_ref": f"PJ-{number}", "amount": f"{number % 700}.5"}
        if number % 7 == 0:
            row["region"] = "4502o2"  # a dead letter now and then
        if number % 11 == 0:
            row["occurred_at"] = ""
        rows.append(row)
    return rows


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_hand_the_sinks_exactly_what_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setattr("connectors.ingest.CHUNK_ROWS", 7)  # many chunks, some short, more than the window
    monkeypatch.setattr("connectors.ingest.PIECE_BYTES", 500)  # a CSV file's workers: many runs of lines
    chinese = {"amount": "缴费金额", "region": "征收地区划代码", "payment_ref": "票据号"}
    mixed: list[Any] = [
        {chinese.get(name, name): cell for name, cell in row.items()} if number % 3 else row
        for number, row in enumerate(_hostile_tax_rows(40))
    ]  # each JSON record names its columns its own way, and its dead letter says them so
    mixed[5::9] = [[1, 2]] * len(mixed[5::9])  # not a record at all, at the start of a chunk among others
    files = [
        write_csv(tmp_path / "a.csv", _hostile_tax_rows(150)),
        write_jsonl(tmp_path / "b.jsonl", [*mixed, {"amount": [1]}]),
        write_xlsx(tmp_path / "c.xlsx", _hostile_tax_rows(20)),
        write_csv(tmp_path / "d.csv", _hostile_tax_rows(6)),  # shorter than one chunk
    ]
    one = _ingest_jobs("tax", files, 1)
    assert len(one[1]) > 150 and len(one[2]) > 40
    assert _ingest_jobs("tax", files, jobs) == one


def test_jobs_refuse_a_file_where_one_process_does_with_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.ingest.CHUNK_ROWS", 5)
    monkeypatch.setattr("connectors.ingest.PIECE_BYTES", 300)  # the rejected run crosses runs of lines
    monkeypatch.setattr("connectors.ingest.REJECTED_IN_A_ROW", 12)
    garbage = [{name: "x" for name in GOOD_ROWS["tax"]}] * 20
    refused = write_csv(tmp_path / "refused.csv", [*_hostile_tax_rows(9), *garbage, *_hostile_tax_rows(30)])
    # A bad byte after the rows a refusal stops at, and one with nothing refused before it: the file
    # is read ahead in chunks, yet what comes first in the file is what is reported.
    bad_byte = write_csv(tmp_path / "bad-byte.csv", _hostile_tax_rows(40))
    with bad_byte.open("ab") as out:
        out.write(b"\xff\xfe not UTF-8\n")
    refused_first = tmp_path / "refused-first.csv"
    refused_first.write_bytes(refused.read_bytes() + b"\xff\xfe not UTF-8\n")
    for paths in ([refused], [bad_byte], [refused_first], [bad_byte, refused]):
        one = _ingest_jobs("tax", paths, 1)
        assert one[0].startswith("refused: ")
        assert _ingest_jobs("tax", paths, 2) == one


def _spanning_tax_rows(count: int) -> list[dict[str, str]]:
    """Rows some of whose cells hold line breaks (quoted, so a record spans lines), among bad rows."""
    rows = _hostile_tax_rows(count)
    for number, row in enumerate(rows):
        if number % 4 == 1:
            row["channel"] = "微信\n转账\r\n" + "第三行\n" * (number % 9)
    return rows


@pytest.mark.parametrize("piece_bytes", [1, 90, 333, 4000])
def test_csv_workers_reading_their_own_lines_give_what_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    # Runs of lines cut inside records (a quoted cell holding line breaks; a quote never closed that
    # swallows lines up to the cell limit, and one that swallows the rest of the file): each
    # worker's guess that a record begins where its run does is checked against the run before.
    monkeypatch.setattr("connectors.ingest.PIECE_BYTES", piece_bytes)
    monkeypatch.setattr("connectors.ingest.CHUNK_ROWS", 3)
    limit = csv.field_size_limit(600)  # the workers read with this process's limit
    try:
        spanning = write_csv(tmp_path / "spanning.csv", _spanning_tax_rows(60))
        blank_lines = tmp_path / "blank.csv"
        blank_lines.write_bytes(spanning.read_bytes().replace(b"\r\n", b"\r\n,,,\r\n\r\n", 7))
        lines = spanning.read_text(encoding="utf-8").splitlines(keepends=True)
        plain = write_csv(tmp_path / "plain.csv", _hostile_tax_rows(60)).read_text(encoding="utf-8").splitlines(True)
        opened = plain[9].replace("PJ-", '"PJ-', 1)  # swallows the lines after it, up to the cell limit
        unclosed = tmp_path / "unclosed.csv"
        unclosed.write_text("".join(plain[:9]) + opened + "".join(plain[10:]), encoding="utf-8")
        to_the_end = tmp_path / "to-the-end.csv"
        to_the_end.write_text("".join(lines) + 'x,"never closed\n' + "more\n" * 3, encoding="utf-8")
        files = [spanning, blank_lines, unclosed, to_the_end]
        one = _ingest_jobs("tax", files, 1)
        assert "blank_lines=12" in one[0] and "read=61," in one[0]
        assert b"a cell longer than 600 characters (a quote not closed?)" in b"".join(one[2])
        assert _ingest_jobs("tax", files, 2) == one
        assert _ingest_lines_jobs("tax", files, 2) == _as_lines(one)
    finally:
        csv.field_size_limit(limit)


def _ingest_lines_jobs(source: str, paths: list[Path], jobs: int) -> tuple[str, bytes, bytes]:
    """What ``ingest_lines`` gives: its summary and the bytes of its events and dead letters."""
    events: list[bytes] = []
    dead: list[bytes] = []
    try:
        summary = ingest_lines(source, paths, SECRET, events.append, dead.append, progress=False, jobs=jobs)
    except InputError as error:
        return f"refused: {error}", b"", b""  # what was written is thrown away
    return repr(summary), b"".join(events), b"".join(dead)


def _as_lines(run: tuple[str, list[bytes], list[bytes]]) -> tuple[str, bytes, bytes]:
    summary, events, dead = run
    if summary.startswith("refused: "):
        return summary, b"", b""
    return summary, b"".join(line + b"\n" for line in events), b"".join(line + b"\n" for line in dead)


@pytest.mark.parametrize("jobs", [1, 2])
def test_lines_are_the_canonical_lines_of_what_the_sinks_receive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setattr("connectors.ingest.CHUNK_ROWS", 7)
    monkeypatch.setattr("connectors.ingest.PIECE_BYTES", 700)
    files = [
        write_csv(tmp_path / "a.csv", _spanning_tax_rows(80)),
        write_jsonl(tmp_path / "b.jsonl", [*_hostile_tax_rows(30), [1]]),
        write_xlsx(tmp_path / "c.xlsx", _hostile_tax_rows(20)),
    ]
    one = _ingest_jobs("tax", files, 1)
    assert len(one[1]) > 80 and len(one[2]) > 20
    assert _ingest_lines_jobs("tax", files, jobs) == _as_lines(one)
    refused = write_csv(tmp_path / "refused.csv", [{name: "x" for name in GOOD_ROWS["tax"]}] * 1000)
    assert _ingest_lines_jobs("tax", [refused], jobs) == _as_lines(_ingest_jobs("tax", [refused], 1))


def test_jobs_beside_another_thread_start_their_workers_without_forking_it(tmp_path: Path) -> None:
    # Forking a process that runs threads (ingest to Kafka runs the producer's) can leave a lock
    # held in a worker for good; Python 3.12+ warns. The workers then come from a fork server.
    files = [write_csv(tmp_path / "a.csv", _spanning_tax_rows(40))]
    one = _ingest_jobs("tax", files, 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            assert _ingest_jobs("tax", files, 2) == one
    finally:
        stop.set()
        other.join()


def test_jobs_after_an_ordinary_progress_bar_still_fork(tmp_path: Path) -> None:
    # The first ordinary tqdm bar starts a thread that stays (even a disabled bar): the bench, the
    # demo and tests make such bars. It alone does not keep the workers from forking.
    from tqdm import tqdm

    from connectors.ingest import _running_threads, _start_method

    with tqdm(total=1, disable=True):
        pass
    assert tqdm.monitor is not None
    threads = _running_threads()  # the monitor, and any a test before this one left running
    method = _start_method()
    assert tqdm.monitor is None and _running_threads() == threads - 1
    assert method == ("fork" if threads == 2 else "forkserver")
    files = [write_csv(tmp_path / "a.csv", _spanning_tax_rows(20))]
    one = _ingest_jobs("tax", files, 1)
    with tqdm(total=1, disable=True):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert _ingest_jobs("tax", files, 2) == one
