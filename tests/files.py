"""Writing small agency files for tests."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import orjson

from connectors.identity import check_character

STUDENT = "11010519491231002X"  # the GB 11643-1999 worked example


def valid_number(area: str = "450202", born: str = "20150607", sequence: int = 123) -> str:
    first17 = f"{area}{born}{sequence:03d}"
    return first17 + check_character(first17)


GOOD_ROWS: dict[str, dict[str, str]] = {
    "education": {
        "id_number": valid_number(),
        "name": "张三",
        "school_code": "4502020001",
        "school_name": "城中区第1小学",
        "school_type": "PRIMARY",
        "school_region": "450202",
        "action": "ENROLLED",
        "occurred_at": "2023-09-01 08:00:00",
        "student_ref": "XJ-0001",
    },
    "insurance": {
        "id_number": valid_number(),
        "insurance_type": "RESIDENT",
        "region": "450202",
        "coverage_year": "2024",
        "action": "REGISTERED",
        "occurred_at": "2023-09-05 10:00:00",
        "enrollment_ref": "CB-0001",
    },
    "tax": {
        "id_number": valid_number(),
        "name": "张三",
        "coverage_year": "2024",
        "amount": "380.00",
        "region": "450202",
        "action": "PAID",
        "occurred_at": "2023-09-06T10:00:00+08:00",
        "payment_ref": "PJ-0001",
        "channel": "微信",
    },
    "hardship": {
        "id_number": valid_number(),
        "category": "ORPHAN",
        "approval_region": "450202",
        "action": "CERTIFIED",
        "valid_from": "2023-01-01",
        "valid_to": "",
        "occurred_at": "2023-06-01T09:00:00+08:00",
        "status_ref": "KN-0001",
    },
}


def write_csv(
    path: Path, rows: Sequence[Mapping[str, Any]], header: Sequence[str] | None = None, encoding: str = "utf-8"
) -> Path:
    header = list(header or rows[0].keys())
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(name) is None else row.get(name) for name in header])
    return path


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def write_xlsx(path: Path, rows: Sequence[Mapping[str, Any]], header: Sequence[str] | None = None) -> Path:
    header = list(header or rows[0].keys())
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append([row.get(name) for name in header])
    workbook.save(path)
    return path
