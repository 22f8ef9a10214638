"""Outreach work lists: the open alerts per county, per school and per agency, as CSV and XLSX, for
the staff who call families and correct registrations.

Each row carries what a caseworker needs and nothing more: the county and school by name and code,
the masked identity number, the agency's own record references (student number, registration and
receipt numbers), the kind in plain Chinese and English, and what to do next. No names of people:
most students are minors, and enrollbridge never holds names in the first place.

The XLSX files are made for Excel: amounts are numbers in yuan (they sum), times are Excel dates in
China Standard Time, the header is frozen with an autofilter over the table, columns are as wide as
their contents. The county workbook has a sheet with every open alert of the county and one sheet
per school. Every text cell is inert (``enrollbridge.sheets``), and file names made from codes never
leave the output folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from enrollbridge.names import KIND_NAMES, SchoolNames, pool_label, region_label, school_type_zh
from enrollbridge.sheets import (
    Column,
    FileNames,
    SheetTitles,
    cst_datetime,
    excel_text,
    fill_sheet,
    inside,
    write_csv,
)
from schemas.models import AlertRecord
from schemas.times import days_to_date, format_date
from streams.core.policy import PolicyBook

COLUMNS = (
    Column("区县", "county"),
    Column("学校", "school"),
    Column("学校类型", "school_type"),
    Column("预警类型", "kind_zh"),
    Column("Kind", "kind_en"),
    Column("证件号（脱敏）", "masked_id"),
    Column("学籍号", "student_ref"),
    Column("参保登记号", "enrollment_refs"),
    Column("票据号", "payment_refs"),
    Column("参保年度", "coverage_year", "int"),
    Column("统筹区", "pool"),
    Column("应缴（元）", "expected_yuan", "money"),
    Column("已缴（元）", "paid_yuan", "money"),
    Column("待遇起始日", "benefit_start", "date"),
    Column("断保年数", "lapsed_years", "int"),
    Column("已修复年数", "repaired_years", "int"),
    Column("预警时间（北京时间）", "as_of", "datetime"),
    Column("处理建议", "next_step_zh"),
    Column("Next step", "next_step_en"),
    Column("预警编号", "alert_id"),
)

# Who must act on which kinds: the insurance bureau cleans registrations, the tax bureau refunds,
# the schools (through the education bureau) follow up with families.
AGENCIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "insurance": ("医保部门：清理重复参保、协助转至审批地参保", ("DUPLICATE_ENROLLMENT", "HARDSHIP_WRONG_PLACE")),
    "tax": ("税务部门：办理退费或补登记", ("OVERPAID", "PAID_UNREGISTERED")),
    "schools": ("学校（教育部门）：动员参保、提醒缴费", ("UNENROLLED", "UNPAID")),
}
_KIND_ORDER = list(KIND_NAMES)


def _yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else Decimal(fen) / 100


def _yuan_text(fen: int | None) -> str:
    return "" if fen is None else f"{Decimal(fen) / 100:.2f}"


def next_step(alert: AlertRecord, policies: PolicyBook | None = None) -> tuple[str, str]:
    """What the agency should do about an open alert, in Chinese and English. For a waiting period
    the policy of its pool and year (when given) says how long it is and what a repair would do."""
    details = alert.details
    if alert.kind == "UNENROLLED":
        return "联系学生家庭，办理城乡居民医保参保登记", "Contact the family and register the student"
    if alert.kind == "UNPAID":
        owed = _yuan_text(details.expected_fen)
        return f"提醒缴费，应缴 {owed} 元", f"Remind the family to pay {owed} yuan"
    if alert.kind == "DUPLICATE_ENROLLMENT":
        return "核实后注销多余的参保登记", "Verify, then cancel the redundant registration"
    if alert.kind == "HARDSHIP_WRONG_PLACE":
        pools = "、".join(region_label(pool) for pool in details.approval_pools)
        return f"协助转至待遇审批地（{pools}）参保", f"Move the registration to the approving pool ({pools})"
    if alert.kind == "OVERPAID":
        excess = _yuan_text((details.paid_fen or 0) - (details.expected_fen or 0))
        return f"办理退费 {excess} 元", f"Refund {excess} yuan"
    if alert.kind == "PAID_UNREGISTERED":
        return "补办参保登记，或办理退费", "Register the payer, or refund the payment"
    return _waiting_step(alert, policies)


def _waiting_step(alert: AlertRecord, policies: PolicyBook | None) -> tuple[str, str]:
    """A waiting period: when benefits start, how many months it is, and how repair payments (修复缴费)
    would shorten it -- one step per lapsed year repaired with the year's full contribution, down to
    the fixed months, or the floor after a long lapse."""
    details = alert.details
    start = format_date(details.benefit_start) if details.benefit_start is not None else ""
    zh, en = f"告知家庭：待遇自 {start} 起享受", f"Tell the family benefits start on {start}"
    policy = policies.get(alert.pool, alert.coverage_year) if policies is not None else None
    if policy is None:
        return zh, en
    rules = policy.continuity
    lapsed, repaired = details.lapsed_years, details.repaired_years
    if rules is None or lapsed is None or repaired is None:
        months = policy.waiting_period_months
        return f"{zh}（等待期 {months} 个月）", f"{en} (a waiting period of {months} months)"
    months = rules.months(policy.waiting_period_months, lapsed, repaired)
    zh += f"（等待期 {months} 个月，断保 {lapsed} 年"
    en += f" (a waiting period of {months} months, {lapsed} lapsed years"
    if repaired:
        zh, en = zh + f"，已修复 {repaired} 年", en + f", {repaired} repaired"
    zh, en = zh + "）", en + ")"
    shortest = rules.months(policy.waiting_period_months, lapsed, max(repaired, lapsed))
    if months <= shortest or not rules.months_per_lapsed_year:
        return zh + "；修复缴费不能再缩短", en + "; repair payments cannot shorten it further"
    years = -(-(months - shortest) // rules.months_per_lapsed_year)
    amount = _yuan_text(policy.contribution_fen)
    return (
        f"{zh}；每修复缴费一年（{amount} 元）缩短 {rules.months_per_lapsed_year} 个月，"
        f"修复 {years} 年可缩短至 {shortest} 个月",
        f"{en}; each year of repair payment ({amount} yuan) shortens it by {rules.months_per_lapsed_year} "
        f"month(s), {years} year(s) to {shortest} months",
    )


def row_of(
    alert: AlertRecord, schools: SchoolNames | None = None, policies: PolicyBook | None = None
) -> dict[str, Any]:
    """One alert as a work-list row: typed values (numbers, dates) that the writers format."""
    details = alert.details
    zh, en = KIND_NAMES[alert.kind]
    step_zh, step_en = next_step(alert, policies)
    benefit: date | None = days_to_date(details.benefit_start) if details.benefit_start is not None else None
    return {
        "county_code": details.county,
        "school_code": details.school_code or "",
        "kind": alert.kind,
        "county": region_label(details.county),
        "school": (schools or SchoolNames()).label(details.school_code),
        "school_type": school_type_zh(details.school_type),
        "kind_zh": zh,
        "kind_en": en,
        "masked_id": details.masked_id,
        "student_ref": details.student_ref or "",
        "enrollment_refs": " ".join(r.enrollment_ref for r in details.registrations),
        "payment_refs": " ".join(details.payment_refs),
        "coverage_year": alert.coverage_year,
        "pool": pool_label(alert.pool),
        "expected_yuan": _yuan(details.expected_fen),
        "paid_yuan": _yuan(details.paid_fen),
        "benefit_start": benefit,
        "lapsed_years": details.lapsed_years,
        "repaired_years": details.repaired_years,
        "as_of": cst_datetime(alert.as_of),
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
    agencies: int = 0


def write_worklists(
    alerts: Iterable[AlertRecord], out: Path, schools: SchoolNames | None = None, policies: PolicyBook | None = None
) -> WorklistFiles:
    """Per county ``county-<code>.{csv,xlsx}`` (every open alert counted under it; the workbook also
    has a sheet per school), per school ``school-<code>.{csv,xlsx}``, and per agency
    ``agency-{insurance,tax,schools}.{csv,xlsx}``; rows by kind, then masked id, then alert id."""
    by_county: dict[str, list[dict[str, Any]]] = {}
    by_school: dict[str, list[dict[str, Any]]] = {}
    by_agency: dict[str, list[dict[str, Any]]] = {agency: [] for agency in AGENCIES}
    count = 0
    for alert in sorted(alerts, key=lambda a: (_KIND_ORDER.index(a.kind), a.details.masked_id, a.alert_id)):
        row = row_of(alert, schools, policies)
        by_county.setdefault(row["county_code"], []).append(row)
        if row["school_code"]:
            by_school.setdefault(row["school_code"], []).append(row)
        for agency, (_, kinds) in AGENCIES.items():
            if alert.kind in kinds:
                by_agency[agency].append(row)
        count += 1
    out.mkdir(parents=True, exist_ok=True)
    names = FileNames()
    for code, rows in sorted(by_county.items()):
        stem = names.stem("county", code)
        write_csv(inside(out, f"{stem}.csv"), COLUMNS, rows)
        _write_county_xlsx(inside(out, f"{stem}.xlsx"), rows[0]["county"], rows)
    for code, rows in sorted(by_school.items()):
        stem = names.stem("school", code)
        write_csv(inside(out, f"{stem}.csv"), COLUMNS, rows)
        _write_xlsx(inside(out, f"{stem}.xlsx"), rows[0]["school"], [("工作清单", rows)])
    for agency, rows in by_agency.items():
        ordered = sorted(rows, key=lambda r: (r["county_code"], r["school_code"], _KIND_ORDER.index(r["kind"])))
        write_csv(inside(out, f"agency-{agency}.csv"), COLUMNS, ordered)
        _write_xlsx(inside(out, f"agency-{agency}.xlsx"), AGENCIES[agency][0], [("工作清单", ordered)])
    return WorklistFiles(len(by_county), len(by_school), count, len(by_agency))


def _write_county_xlsx(path: Path, title: str, rows: list[dict[str, Any]]) -> None:
    """The county's every open alert on the first sheet, then a sheet per school, by code: titled with
    the code and as much of the name as fits (Excel allows 31 characters)."""
    sheets: list[tuple[str, Sequence[dict[str, Any]]]] = [("全部 All", rows)]
    per_school: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["school_code"]:
            per_school.setdefault(row["school_code"], []).append(row)
    titles = SheetTitles(["全部 All"])
    for code, school_rows in sorted(per_school.items()):
        label: str = school_rows[0]["school"]
        name = label.removesuffix(f" {code}") if label != code else ""
        sheets.append((titles.title(f"{code} {name}".strip()), school_rows))
    _write_xlsx(path, title, sheets)


def _write_xlsx(path: Path, title: str, sheets: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    workbook.remove(first)
    for name, rows in sheets:
        fill_sheet(workbook.create_sheet(name), COLUMNS, rows)
    workbook.properties.title = excel_text(title)
    workbook.save(path)
