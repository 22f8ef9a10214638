"""Outreach work lists: the open alerts per county and per school, as CSV and XLSX, for the staff who
call families and correct registrations.

Each row carries what a caseworker needs and nothing more: the masked identity number, the agency's
own record references (student number, registration and receipt numbers), the kind in plain Chinese
and English, and what to do next. No names: most students are minors, and enrollbridge never holds
names in the first place.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from schemas.models import AlertRecord
from schemas.times import format_date, format_instant

KIND_NAMES = {
    "UNENROLLED": ("未参保", "Not enrolled"),
    "UNPAID": ("已登记未缴费", "Registered, not paid"),
    "DUPLICATE_ENROLLMENT": ("重复参保", "Duplicate enrollment"),
    "HARDSHIP_WRONG_PLACE": ("困难群体未在审批地参保", "Hardship student registered outside the approving pool"),
    "OVERPAID": ("多缴保费", "Overpaid"),
    "PAID_UNREGISTERED": ("已缴费未登记", "Paid, not registered"),
    "WAITING_PERIOD": ("逾期缴费，设待遇等待期", "Late payment: waiting period"),
}

COLUMNS = (
    ("区县", "county"),
    ("学校代码", "school_code"),
    ("学校类型", "school_type"),
    ("预警类型", "kind_zh"),
    ("Kind", "kind_en"),
    ("证件号（脱敏）", "masked_id"),
    ("学籍号", "student_ref"),
    ("参保登记号", "enrollment_refs"),
    ("票据号", "payment_refs"),
    ("参保年度", "coverage_year"),
    ("统筹区", "pool"),
    ("应缴（元）", "expected_yuan"),
    ("已缴（元）", "paid_yuan"),
    ("预警时间", "as_of"),
    ("处理建议", "next_step_zh"),
    ("Next step", "next_step_en"),
    ("预警编号", "alert_id"),
)


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{fen / 100:.2f}"


def next_step(alert: AlertRecord) -> tuple[str, str]:
    """What the agency should do about an open alert, in Chinese and English."""
    details = alert.details
    if alert.kind == "UNENROLLED":
        return "联系学生家庭，办理城乡居民医保参保登记", "Contact the family and register the student"
    if alert.kind == "UNPAID":
        owed = _yuan(details.expected_fen)
        return f"提醒缴费，应缴 {owed} 元", f"Remind the family to pay {owed} yuan"
    if alert.kind == "DUPLICATE_ENROLLMENT":
        return "核实后注销多余的参保登记", "Verify, then cancel the redundant registration"
    if alert.kind == "HARDSHIP_WRONG_PLACE":
        pools = "、".join(details.approval_pools)
        return f"协助转至待遇审批地（{pools}）参保", f"Move the registration to the approving pool ({pools})"
    if alert.kind == "OVERPAID":
        excess = _yuan((details.paid_fen or 0) - (details.expected_fen or 0))
        return f"办理退费 {excess} 元", f"Refund {excess} yuan"
    if alert.kind == "PAID_UNREGISTERED":
        return "补办参保登记，或办理退费", "Register the payer, or refund the payment"
    start = format_date(details.benefit_start) if details.benefit_start is not None else ""
    return f"告知家庭：待遇自 {start} 起享受", f"Tell the family benefits start on {start}"


def row_of(alert: AlertRecord) -> dict[str, str]:
    details = alert.details
    zh, en = KIND_NAMES[alert.kind]
    step_zh, step_en = next_step(alert)
    return {
        "county": details.county,
        "school_code": details.school_code or "",
        "school_type": details.school_type or "",
        "kind_zh": zh,
        "kind_en": en,
        "masked_id": details.masked_id,
        "student_ref": details.student_ref or "",
        "enrollment_refs": " ".join(r.enrollment_ref for r in details.registrations),
        "payment_refs": " ".join(details.payment_refs),
        "coverage_year": str(alert.coverage_year),
        "pool": alert.pool,
        "expected_yuan": _yuan(details.expected_fen),
        "paid_yuan": _yuan(details.paid_fen),
        "as_of": format_instant(alert.as_of),
        "next_step_zh": step_zh,
        "next_step_en": step_en,
        "alert_id": alert.alert_id,
    }


def open_alerts(records: Iterable[AlertRecord]) -> list[AlertRecord]:
    """The alerts whose latest transition is OPEN."""
    latest: dict[str, AlertRecord] = {}
    for record in records:
        latest[record.alert_id] = record
    return [alert for alert in latest.values() if alert.status == "OPEN"]


@dataclass
class WorklistFiles:
    counties: int
    schools: int
    rows: int


def write_worklists(alerts: Iterable[AlertRecord], out: Path) -> WorklistFiles:
    """``out/county-<code>.{csv,xlsx}`` with every open alert counted under a county, and
    ``out/school-<code>.{csv,xlsx}`` with those tied to a school's roster entry; rows by kind, then id."""
    by_county: dict[str, list[dict[str, str]]] = {}
    by_school: dict[str, list[dict[str, str]]] = {}
    count = 0
    for alert in sorted(alerts, key=lambda a: (list(KIND_NAMES).index(a.kind), a.details.masked_id, a.alert_id)):
        row = row_of(alert)
        by_county.setdefault(row["county"], []).append(row)
        if row["school_code"]:
            by_school.setdefault(row["school_code"], []).append(row)
        count += 1
    out.mkdir(parents=True, exist_ok=True)
    for prefix, groups in (("county", by_county), ("school", by_school)):
        for code, rows in groups.items():
            _write_csv(out / f"{prefix}-{code}.csv", rows)
            _write_xlsx(out / f"{prefix}-{code}.xlsx", f"{prefix} {code}", rows)
    return WorklistFiles(len(by_county), len(by_school), count)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    # UTF-8 with a byte-order mark: what Excel on Chinese Windows needs to show the headers.
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header for header, _ in COLUMNS)
        for row in rows:
            writer.writerow(row[key] for _, key in COLUMNS)


def _write_xlsx(path: Path, title: str, rows: list[dict[str, str]]) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "工作清单"
    sheet.append([header for header, _ in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([row[key] for _, key in COLUMNS])
    sheet.freeze_panes = "A2"
    workbook.properties.title = title
    workbook.save(path)
