"""What people read instead of codes: region names (GB/T 2260), school names (from the rosters) and the
Chinese (and English) labels of alert kinds, statuses, school types, insurance types and hardship
categories. Every output meant for a person (dashboard, report, work lists) takes its words from here.

Region names come from the Ministry of Civil Affairs' table of division codes at and above county
level, shipped as ``assets/gbt2260-2024.txt`` (its header gives the edition and the source). A code
that is not in the table (a made-up district of a synthetic season, a code newer than the table) is
shown as the bare code: never a guess.

School names are not in the alerts or coverage records; they come from the roster events
(``RosterChange.school_name``): the name of the school's latest roster record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import orjson

from infra.errors import InputError
from schemas.codec import event_from_json
from schemas.models import RosterChange

ASSETS = Path(__file__).resolve().parent / "assets"
REGION_TABLE = ASSETS / "gbt2260-2024.txt"

KIND_NAMES: dict[str, tuple[str, str]] = {
    "UNENROLLED": ("未参保", "Not enrolled"),
    "UNPAID": ("已登记未缴费", "Registered, not paid"),
    "DUPLICATE_ENROLLMENT": ("重复参保", "Duplicate enrollment"),
    "HARDSHIP_WRONG_PLACE": ("困难群体未在审批地参保", "Hardship student registered outside the approving pool"),
    "OVERPAID": ("多缴保费", "Overpaid"),
    "PAID_UNREGISTERED": ("已缴费未登记", "Paid, not registered"),
    "WAITING_PERIOD": ("待遇等待期（逾期缴费或断保）", "Waiting period (late payment or lapse)"),
}
STATUS_NAMES: dict[str, tuple[str, str]] = {
    "OPEN": ("未消除", "Open"),
    "RESOLVED": ("已消除", "Resolved"),
}
SEVERITY_NAMES: dict[str, tuple[str, str]] = {
    "HIGH": ("高", "High"),
    "MEDIUM": ("中", "Medium"),
    "LOW": ("低", "Low"),
    "INFO": ("提示", "Info"),
}
SCHOOL_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "KINDERGARTEN": ("幼儿园", "Kindergarten"),
    "PRIMARY": ("小学", "Primary school"),
    "JUNIOR_SECONDARY": ("初中", "Junior secondary school"),
    "SENIOR_SECONDARY": ("高中", "Senior secondary school"),
    "SECONDARY_VOCATIONAL": ("中等职业学校", "Secondary vocational school"),
    "TECHNICAL": ("技工学校", "Technical school"),
    "SPECIAL_EDUCATION": ("特殊教育学校", "Special education school"),
    "HIGHER_EDUCATION": ("高等学校", "Higher education"),
    "RESEARCH_INSTITUTE": ("科研院所", "Research institute"),
}
INSURANCE_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "RESIDENT": ("城乡居民医保", "Resident insurance"),
    "EMPLOYEE": ("职工医保", "Employee insurance"),
}
SOURCE_NAMES: dict[str, tuple[str, str]] = {
    "education": ("教育部门学籍", "Education bureau roster"),
    "insurance": ("医保参保登记", "Insurance registrations"),
    "tax": ("税务缴费", "Tax payments"),
    "hardship": ("困难群体认定", "Hardship statuses"),
}
HARDSHIP_CATEGORY_NAMES: dict[str, tuple[str, str]] = {
    "EXTREME_POVERTY": ("特困人员", "Extreme poverty"),
    "MINIMUM_LIVING": ("低保对象", "Minimum living allowance"),
    "ORPHAN": ("孤儿", "Orphan"),
    "DE_FACTO_UNSUPPORTED_CHILD": ("事实无人抚养儿童", "De facto unsupported child"),
    "LOW_INCOME_MARGINAL": ("低保边缘家庭成员", "Low-income marginal household"),
    "POVERTY_MONITORED": ("防返贫监测对象", "Monitored for relapse into poverty"),
    "LIFTED_FROM_POVERTY": ("脱贫人口", "Lifted from poverty"),
    "SEVERE_DISABILITY": ("重度残疾人", "Severe disability"),
}


def _zh(table: dict[str, tuple[str, str]], symbol: str | None) -> str:
    if not symbol:
        return ""
    return table[symbol][0] if symbol in table else symbol


def _en(table: dict[str, tuple[str, str]], symbol: str | None) -> str:
    if not symbol:
        return ""
    return table[symbol][1] if symbol in table else symbol


def kind_zh(kind: str) -> str:
    return _zh(KIND_NAMES, kind)


def kind_en(kind: str) -> str:
    return _en(KIND_NAMES, kind)


def status_zh(status: str) -> str:
    return _zh(STATUS_NAMES, status)


def severity_zh(severity: str) -> str:
    return _zh(SEVERITY_NAMES, severity)


def school_type_zh(school_type: str | None) -> str:
    return _zh(SCHOOL_TYPE_NAMES, school_type)


def insurance_type_zh(insurance_type: str | None) -> str:
    return _zh(INSURANCE_TYPE_NAMES, insurance_type)


def category_zh(category: str | None) -> str:
    return _zh(HARDSHIP_CATEGORY_NAMES, category)


@cache
def region_table() -> dict[str, str]:
    """Code -> name of every division in the shipped GB/T 2260 table."""
    names: dict[str, str] = {}
    for line in REGION_TABLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            code, name = line.split(" ", 1)
            names[code] = name
    return names


@cache
def region_edition() -> str:
    """The edition line of the shipped table (for the report's notes)."""
    for line in REGION_TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# Edition:"):
            return line.removeprefix("# Edition:").strip()
    return ""


def region_name(code: str | None) -> str | None:
    """The division's name, or None when the code is not in the table."""
    return region_table().get(code) if code else None


def region_label(code: str | None) -> str:
    """``柳城县 450222``: the name and the code, or the bare code when the table does not know it."""
    if not code:
        return ""
    name = region_name(code)
    return f"{name} {code}" if name else code


def pool_label(pool: str, policy_name: str | None = None) -> str:
    """A pooling area: its GB/T 2260 name, else the policy's own name, with the code."""
    name = region_name(pool) or policy_name
    return f"{name} {pool}" if name and name != pool else pool


class SchoolNames:
    """School code -> the name on its latest roster record (by ``occurred_at``, then ``event_id``)."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, str, str]] = {}

    def add(self, event: RosterChange) -> None:
        if not event.school_name:
            return
        seen = self._latest.get(event.school_code)
        candidate = (event.occurred_at, event.event_id, event.school_name)
        if seen is None or candidate[:2] > seen[:2]:
            self._latest[event.school_code] = candidate

    def add_all(self, events: Iterable[object]) -> SchoolNames:
        for event in events:
            if isinstance(event, RosterChange):
                self.add(event)
        return self

    @classmethod
    def from_event_files(cls, paths: Sequence[Path]) -> SchoolNames:
        """Read the roster events of canonical event files (JSON Lines or Avro containers); in JSON
        Lines only the roster lines are decoded, so giving every agency's events costs little."""
        from streams.replay import AVRO_MAGIC, read_events

        names = cls()
        for path in paths:
            try:
                with path.open("rb") as raw:
                    avro = raw.read(4) == AVRO_MAGIC
            except OSError as error:
                raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
            if avro:
                names.add_all(event for _, event in read_events(path))
                continue
            with path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    if b'"RosterChange"' in line:
                        try:
                            names.add_all([event_from_json(orjson.loads(line))])
                        except (ValueError, TypeError) as error:
                            message = str(error).splitlines()[0]
                            raise InputError(f"{path}:{number}: not a canonical event: {message}") from None
        return names

    def __len__(self) -> int:
        return len(self._latest)

    def name(self, school_code: str | None) -> str | None:
        if not school_code:
            return None
        found = self._latest.get(school_code)
        return found[2] if found else None

    def label(self, school_code: str | None) -> str:
        """``柳城县第1小学 4502220001``, or the bare code when no roster record named the school."""
        if not school_code:
            return ""
        name = self.name(school_code)
        return f"{name} {school_code}" if name else school_code
