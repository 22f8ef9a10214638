"""What each agency sends (SPEC section 3), validated, and the event each record becomes.

A record model takes one row keyed by canonical column names; ``HEADERS`` lists the Chinese
headers accepted for each of them. ``event()`` pseudonymises the person and returns the typed event
with its content id; the raw identity number goes no further than this module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
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
from schemas.codec import new_event
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
        if date_to_days(birth_date(self.id_number)) > local_day(self.occurred_at):
            raise PydanticCustomError(
                "BAD_BIRTH_DATE", "identity number's birth date is after the record's time", {"field": "id_number"}
            )
        return self

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

    def _event_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def event(self, secret: Secret) -> SourceEvent:
        """The pseudonymised event for this record, with its content-derived ``event_id``."""
        return new_event(
            self.event_type,
            person_key=person_key(self.id_number, secret),
            occurred_at=self.occurred_at,
            masked_id=mask(self.id_number),
            recorded_at=self.recorded_at,
            id_type=self.id_type,
            **self._event_fields(),
        )


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

    def _event_fields(self) -> dict[str, Any]:
        return {
            "school_code": self.school_code,
            "school_name": self.school_name,
            "school_type": self.school_type,
            "school_region": self.school_region,
            "action": self.action,
            "student_ref": self.student_ref,
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

    def _event_fields(self) -> dict[str, Any]:
        return {
            "insurance_type": self.insurance_type,
            "region": self.region,
            "coverage_year": self.coverage_year,
            "action": self.action,
            "enrollment_ref": self.enrollment_ref,
            "channel": self.channel,
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

    def _event_fields(self) -> dict[str, Any]:
        return {
            "coverage_year": self.coverage_year,
            "amount_fen": self.amount,
            "region": self.region,
            "action": self.action,
            "payment_ref": self.payment_ref,
            "channel": self.channel,
            "purpose": self.purpose,
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
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise PydanticCustomError("BAD_DATE", "valid_to is before valid_from", {"field": "valid_to"})
        return self

    def _event_fields(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "approval_region": self.approval_region,
            "action": self.action,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "status_ref": self.status_ref,
        }


RECORD_TYPES: dict[str, type[SourceRecord]] = {
    model.source: model for model in (EducationRecord, InsuranceRecord, TaxRecord, HardshipRecord)
}
