"""What each agency sends (SPEC section 3), validated, and the event each record becomes.

A record model takes one row keyed by canonical column names; ``HEADERS`` lists the Chinese
headers accepted for each of them. ``event()`` pseudonymises the person and returns the typed event
with its content id; the raw identity number goes no further than this module.

Two paths give the same event. ``fast_event`` runs each field's own parser (the model's validators,
called directly) and the checks across fields, and builds the event without building the record's
model or validating the event's fields again; the first failure makes it give up. The model path
(``model_validate(...).event(...)``) then runs for that row alone and says what is wrong with it, so
every dead letter is the model's. Tests hold the two to the same events on many generated rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, ClassVar, Self, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from connectors.fields import (
    AmountFen,
    CoverageYear,
    IdentityNumber,
    IdType,
    Instant,
    LocalDate,
    OptionalInstant,
    OptionalLocalDate,
    OptionalName,
    OptionalText,
    Region,
    RequiredText,
    enum_field,
)
from connectors.identity import Secret, birth_date, mask, person_key
from schemas.codec import new_event, trusted_event, trusted_line
from schemas.models import (
    HardshipAction,
    HardshipCategory,
    HardshipStatusChange,
    InsuranceType,
    PaymentAction,
    PaymentChange,
    PaymentPurpose,
    RegistrationAction,
    RegistrationChange,
    RosterAction,
    RosterChange,
    SchoolType,
    SourceEvent,
)
from schemas.times import date_to_days, local_day

_COMMON_HEADERS: dict[str, tuple[str, ...]] = {
    "id_number": ("身份证号", "身份证号码", "公民身份号码", "证件号码"),
    "name": ("姓名",),
    "recorded_at": ("记录时间",),
    "id_type": ("证件类型",),
}


class SourceRecord(BaseModel):
    """Fields every agency record has. ``name`` is read so it can be left out of everything written.

    ``recorded_at`` is when the agency's system wrote this version of the record (SPEC section 3);
    ``id_type`` names the identity document as the agency gave it and never changes ``person_key``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    source: ClassVar[str]
    HEADERS: ClassVar[dict[str, tuple[str, ...]]]
    event_type: ClassVar[type[SourceEvent]]

    id_number: IdentityNumber
    occurred_at: Instant
    name: OptionalName = None
    recorded_at: OptionalInstant = None
    id_type: IdType = None

    @model_validator(mode="after")
    def _born_before_the_record(self) -> Self:
        if _born_after(self.id_number, self.occurred_at):
            raise PydanticCustomError(
                "BAD_BIRTH_DATE", "identity number's birth date is after the record's time", {"field": "id_number"}
            )
        return self

    @classmethod
    def consistent(cls, values: Mapping[str, Any]) -> bool:
        """Whether fields that are each valid agree with each other (what the model validators check)."""
        return not _born_after(values["id_number"], values["occurred_at"])

    @classmethod
    def required_columns(cls) -> list[str]:
        return [name for name, info in cls.model_fields.items() if info.is_required()]

    @classmethod
    def header_names(cls) -> dict[str, str]:
        """Every accepted header (canonical and Chinese) mapped to its canonical column name."""
        names = {name: name for name in cls.model_fields}
        for canonical, aliases in {**_COMMON_HEADERS, **cls.HEADERS}.items():
            names.update(dict.fromkeys(aliases, canonical))
        return names

    @classmethod
    def _event_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The event's own fields, from the record's valid field values."""
        raise NotImplementedError

    @classmethod
    def _event_of(cls, values: Mapping[str, Any], secret: Secret) -> dict[str, Any]:
        number = values["id_number"]
        return {
            "person_key": person_key(number, secret),
            "occurred_at": values["occurred_at"],
            "masked_id": mask(number),
            "recorded_at": values["recorded_at"],
            "id_type": values["id_type"],
            **cls._event_fields(values),
        }

    def event(self, secret: Secret) -> SourceEvent:
        """The pseudonymised event for this record, with its content-derived ``event_id``; the event's
        model checks again what the record promised (should a value slip through, it is an error here)."""
        return new_event(self.event_type, **self._event_of(self.__dict__, secret))

    @classmethod
    def fast_event(cls, row: Mapping[str, object], secret: Secret) -> SourceEvent | None:
        """The event of a row that passes every check, as ``model_validate(row).event(secret)`` gives
        it; None as soon as a check fails (the model path then says what is wrong)."""
        fields = cls._fast_fields(row, secret)
        return None if fields is None else trusted_event(cls.event_type, fields)

    @classmethod
    def fast_line(cls, row: Mapping[str, object], secret: Secret) -> bytes | None:
        """The canonical JSON line (with its newline) of ``fast_event``'s event, without building it."""
        fields = cls._fast_fields(row, secret)
        return None if fields is None else trusted_line(cls.event_type, fields)

    @classmethod
    def _fast_fields(cls, row: Mapping[str, object], secret: Secret) -> dict[str, Any] | None:
        """The event's fields from a row that passes every check; None as soon as one fails."""
        values: dict[str, Any] = {}
        try:
            for name, parse, required, default in _plan(cls):
                cell = row.get(name, _ABSENT)
                if cell is _ABSENT:
                    if required:
                        return None
                    values[name] = default
                else:
                    values[name] = parse(cell)
            if not cls.consistent(values):
                return None
        except (ValueError, AssertionError):  # what pydantic turns into validation errors
            return None
        return cls._event_of(values, secret)


_ABSENT: Any = object()


@cache
def _plan(model: type[SourceRecord]) -> tuple[tuple[str, Callable[[Any], Any], bool, Any], ...]:
    """Each field of a record model: its name, its parser, whether it is required, its default."""
    plan: list[tuple[str, Callable[[Any], Any], bool, Any]] = []
    for name, info in model.model_fields.items():
        parsers = [cast(Callable[[Any], Any], item.func) for item in info.metadata if isinstance(item, BeforeValidator)]
        # A field checked by anything but its one parser (a constraint, an alias) needs the model.
        if len(parsers) != 1 or len(info.metadata) != 1 or info.alias or info.validation_alias:
            raise TypeError(f"{model.__name__}.{name}: a fast-path field has exactly one BeforeValidator")
        plan.append((name, _memoised(parsers[0]), info.is_required(), info.default))
    return tuple(plan)


_MEMO_LIMIT = 4096  # texts remembered per field: a file's schools, actions and regions fit many times


def _memoised(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A field's parser that remembers what it made of each text it accepted. Most columns repeat
    from row to row (a school, its region, an action); a parser is a function of the cell alone, so
    the remembered value is the one it would give again. A failure is not remembered: it raises each
    time. Columns that never repeat (identity numbers, times) fill the memo once and then only cost
    a miss; a hostile file cannot make it grow past ``_MEMO_LIMIT``."""
    memo: dict[str, Any] = {}

    def parse_cell(cell: Any) -> Any:
        if cell.__class__ is not str:  # 1, 1.0 and True are equal keys, and parse differently
            return parse(cell)
        value = memo.get(cell, _ABSENT)
        if value is _ABSENT:
            value = parse(cell)
            if len(memo) < _MEMO_LIMIT:
                memo[cell] = value
        return value

    return parse_cell


def _born_after(id_number: str, occurred_at: int) -> bool:
    return date_to_days(birth_date(id_number)) > local_day(occurred_at)


class EducationRecord(SourceRecord):
    """A roster change (学籍变动) from the education bureau."""

    source: ClassVar[str] = "education"
    event_type: ClassVar[type[SourceEvent]] = RosterChange
    HEADERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "school_code": ("学校代码",),
        "school_name": ("学校名称",),
        "school_type": ("学校类型",),
        "school_region": ("学校所在地区划代码",),
        "action": ("变动类型",),
        "occurred_at": ("变动时间",),
        "student_ref": ("学籍号",),
    }

    school_code: RequiredText
    school_name: OptionalName = None
    school_type: enum_field(SchoolType)  # type: ignore[valid-type]
    school_region: Region
    action: enum_field(RosterAction)  # type: ignore[valid-type]
    student_ref: RequiredText

    @classmethod
    def _event_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "school_code": values["school_code"],
            "school_name": values["school_name"],
            "school_type": values["school_type"],
            "school_region": values["school_region"],
            "action": values["action"],
            "student_ref": values["student_ref"],
        }


class InsuranceRecord(SourceRecord):
    """An enrollment registration (参保登记) from the medical insurance bureau."""

    source: ClassVar[str] = "insurance"
    event_type: ClassVar[type[SourceEvent]] = RegistrationChange
    HEADERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "insurance_type": ("险种",),
        "region": ("参保地区划代码",),
        "coverage_year": ("参保年度",),
        "action": ("业务类型",),
        "occurred_at": ("办理时间",),
        "enrollment_ref": ("参保登记号",),
        "channel": ("办理渠道",),
    }

    # 390: 城乡居民基本医疗保险, 310: 职工基本医疗保险 (national insurance type codes).
    insurance_type: enum_field(InsuranceType, {"390": "RESIDENT", "310": "EMPLOYEE"})  # type: ignore[valid-type]
    region: Region
    coverage_year: CoverageYear
    action: enum_field(RegistrationAction)  # type: ignore[valid-type]
    enrollment_ref: RequiredText
    channel: OptionalText = None

    @classmethod
    def _event_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "insurance_type": values["insurance_type"],
            "region": values["region"],
            "coverage_year": values["coverage_year"],
            "action": values["action"],
            "enrollment_ref": values["enrollment_ref"],
            "channel": values["channel"],
        }


# How tax bureaus write the payment's purpose: 正常缴费 (a year's ordinary contribution), 补缴 or
# 修复缴费 (paying to repair a lapse in continuous coverage).
_PURPOSE_NAMES = {"正常缴费": "CONTRIBUTION", "补缴": "REPAIR", "修复缴费": "REPAIR"}


class TaxRecord(SourceRecord):
    """A premium payment or refund (保费征收) from the tax bureau."""

    source: ClassVar[str] = "tax"
    event_type: ClassVar[type[SourceEvent]] = PaymentChange
    HEADERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "coverage_year": ("缴费年度",),
        "amount": ("缴费金额",),
        "region": ("征收地区划代码",),
        "action": ("业务类型", "缴费状态"),
        "occurred_at": ("缴费时间",),
        "payment_ref": ("票据号",),
        "channel": ("缴费渠道",),
        "purpose": ("缴费类型",),
    }

    coverage_year: CoverageYear
    amount: AmountFen
    region: Region
    action: enum_field(PaymentAction)  # type: ignore[valid-type]
    payment_ref: RequiredText
    channel: OptionalText = None
    # None when absent or empty (a CONTRIBUTION), so the ids of existing payment events stay as they were.
    purpose: enum_field(PaymentPurpose, _PURPOSE_NAMES, optional=True) = None  # type: ignore[valid-type]

    @classmethod
    def _event_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "coverage_year": values["coverage_year"],
            "amount_fen": values["amount"],
            "region": values["region"],
            "action": values["action"],
            "payment_ref": values["payment_ref"],
            "channel": values["channel"],
            "purpose": values["purpose"],
        }


class HardshipRecord(SourceRecord):
    """A hardship status change (困难群体认定)."""

    source: ClassVar[str] = "hardship"
    event_type: ClassVar[type[SourceEvent]] = HardshipStatusChange
    HEADERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "category": ("困难类别",),
        "approval_region": ("待遇审批地区划代码",),
        "action": ("认定状态", "业务类型"),
        "valid_from": ("有效期起", "有效期开始日期"),
        "valid_to": ("有效期止", "有效期结束日期"),
        "occurred_at": ("认定时间", "办理时间"),
        "status_ref": ("认定编号",),
    }

    category: enum_field(HardshipCategory)  # type: ignore[valid-type]
    approval_region: Region
    action: enum_field(HardshipAction)  # type: ignore[valid-type]
    valid_from: LocalDate
    valid_to: OptionalLocalDate = None
    status_ref: RequiredText

    @model_validator(mode="after")
    def _validity_in_order(self) -> Self:
        if _validity_reversed(self.valid_from, self.valid_to):
            raise PydanticCustomError("BAD_DATE", "valid_to is before valid_from", {"field": "valid_to"})
        return self

    @classmethod
    def consistent(cls, values: Mapping[str, Any]) -> bool:
        return super().consistent(values) and not _validity_reversed(values["valid_from"], values["valid_to"])

    @classmethod
    def _event_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "category": values["category"],
            "approval_region": values["approval_region"],
            "action": values["action"],
            "valid_from": values["valid_from"],
            "valid_to": values["valid_to"],
            "status_ref": values["status_ref"],
        }


def _validity_reversed(valid_from: int, valid_to: int | None) -> bool:
    return valid_to is not None and valid_to < valid_from


RECORD_TYPES: dict[str, type[SourceRecord]] = {
    model.source: model for model in (EducationRecord, InsuranceRecord, TaxRecord, HardshipRecord)
}
