"""Pydantic models matching the Avro schemas in this folder, field for field.

In Python an instant is an ``int`` of epoch milliseconds and a local date an ``int`` of days since
1970-01-01 (the Avro representation); in JSON mode they render as ISO text, and validation accepts
either form. Enums are stored as their plain string values.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from schemas.times import (
    date_to_days,
    datetime_to_ms,
    format_date,
    format_instant,
    parse_date,
    parse_instant,
    showable_days,
    showable_instant,
)


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        return parse_instant(value)
    if isinstance(value, datetime):  # an Avro timestamp-millis: its CST date can still be year 10000
        return showable_instant(datetime_to_ms(value), value.isoformat())
    if isinstance(value, int) and not isinstance(value, bool):
        return showable_instant(value)
    return value  # pydantic says what is wrong with it


def _date(value: Any) -> Any:
    if isinstance(value, str):
        return parse_date(value)
    if isinstance(value, int) and not isinstance(value, bool):  # an Avro date, or days in JSON
        return showable_days(value)
    return date_to_days(value) if isinstance(value, date) else value


EpochMillis = Annotated[
    int, BeforeValidator(_instant), PlainSerializer(format_instant, return_type=str, when_used="json")
]
EpochDays = Annotated[int, BeforeValidator(_date), PlainSerializer(format_date, return_type=str, when_used="json")]
PersonKey = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
EventId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
RegionCode = Annotated[str, Field(pattern=r"^[0-9]{6}$")]
# The coverage years agency records may carry (the connectors' BAD_YEAR): an event of year 99999999
# would end the rules in a traceback when they take that year's first and last day.
CoverageYear = Annotated[int, Field(ge=1990, le=2100)]


class SchoolType(StrEnum):
    KINDERGARTEN = "KINDERGARTEN"
    PRIMARY = "PRIMARY"
    JUNIOR_SECONDARY = "JUNIOR_SECONDARY"
    SENIOR_SECONDARY = "SENIOR_SECONDARY"
    SECONDARY_VOCATIONAL = "SECONDARY_VOCATIONAL"
    TECHNICAL = "TECHNICAL"
    SPECIAL_EDUCATION = "SPECIAL_EDUCATION"
    HIGHER_EDUCATION = "HIGHER_EDUCATION"
    RESEARCH_INSTITUTE = "RESEARCH_INSTITUTE"


class RosterAction(StrEnum):
    ENROLLED = "ENROLLED"
    LEFT = "LEFT"


class InsuranceType(StrEnum):
    RESIDENT = "RESIDENT"
    EMPLOYEE = "EMPLOYEE"


class RegistrationAction(StrEnum):
    REGISTERED = "REGISTERED"
    CANCELLED = "CANCELLED"


class PaymentAction(StrEnum):
    PAID = "PAID"
    REFUNDED = "REFUNDED"


class PaymentPurpose(StrEnum):
    CONTRIBUTION = "CONTRIBUTION"
    REPAIR = "REPAIR"


class HardshipCategory(StrEnum):
    EXTREME_POVERTY = "EXTREME_POVERTY"
    MINIMUM_LIVING = "MINIMUM_LIVING"
    ORPHAN = "ORPHAN"
    DE_FACTO_UNSUPPORTED_CHILD = "DE_FACTO_UNSUPPORTED_CHILD"
    LOW_INCOME_MARGINAL = "LOW_INCOME_MARGINAL"
    POVERTY_MONITORED = "POVERTY_MONITORED"
    LIFTED_FROM_POVERTY = "LIFTED_FROM_POVERTY"
    SEVERE_DISABILITY = "SEVERE_DISABILITY"


class HardshipAction(StrEnum):
    CERTIFIED = "CERTIFIED"
    REVOKED = "REVOKED"


class AlertKind(StrEnum):
    UNENROLLED = "UNENROLLED"
    UNPAID = "UNPAID"
    DUPLICATE_ENROLLMENT = "DUPLICATE_ENROLLMENT"
    HARDSHIP_WRONG_PLACE = "HARDSHIP_WRONG_PLACE"
    OVERPAID = "OVERPAID"
    PAID_UNREGISTERED = "PAID_UNREGISTERED"
    WAITING_PERIOD = "WAITING_PERIOD"


class AlertStatus(StrEnum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


class Severity(StrEnum):
    INFO = "INFO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class Record(BaseModel):
    """Base of every contract model: immutable, enums as plain strings, unknown fields refused."""

    model_config = ConfigDict(frozen=True, use_enum_values=True, extra="forbid")
    schema_name: ClassVar[str]


class Event(Record):
    """Base of the events on the unified log; every concrete event also has ``occurred_at``."""

    event_id: EventId


class PersonEvent(Event):
    """An event about one person, keyed by ``person_key`` on every topic."""

    person_key: PersonKey
    occurred_at: EpochMillis
    masked_id: str

    @property
    def version_time(self) -> int:
        """When this version of the agency's record was written: ``recorded_at``, else ``occurred_at``."""
        recorded: int | None = getattr(self, "recorded_at", None)
        return self.occurred_at if recorded is None else recorded


class RosterChange(PersonEvent):
    schema_name: ClassVar[str] = "RosterChange"
    school_code: str
    school_name: str | None = None
    school_type: SchoolType
    school_region: RegionCode
    action: RosterAction
    student_ref: str
    recorded_at: EpochMillis | None = None  # since version 2 (RegistrationChange: 3)
    id_type: str | None = None  # since version 2 (RegistrationChange: 3)


class RegistrationChange(PersonEvent):
    schema_name: ClassVar[str] = "RegistrationChange"
    insurance_type: InsuranceType
    region: RegionCode
    coverage_year: CoverageYear
    action: RegistrationAction
    enrollment_ref: str
    channel: str | None = None  # since version 2 of the schema
    recorded_at: EpochMillis | None = None  # since version 2 (RegistrationChange: 3)
    id_type: str | None = None  # since version 2 (RegistrationChange: 3)


class PaymentChange(PersonEvent):
    schema_name: ClassVar[str] = "PaymentChange"
    coverage_year: CoverageYear
    amount_fen: Annotated[int, Field(ge=0)]
    region: RegionCode
    action: PaymentAction
    payment_ref: str
    channel: str | None = None
    recorded_at: EpochMillis | None = None  # since version 2 (RegistrationChange: 3)
    id_type: str | None = None  # since version 2 (RegistrationChange: 3)
    purpose: PaymentPurpose | None = None  # since version 2; None is CONTRIBUTION


class HardshipStatusChange(PersonEvent):
    schema_name: ClassVar[str] = "HardshipStatusChange"
    category: HardshipCategory
    approval_region: RegionCode
    action: HardshipAction
    valid_from: EpochDays
    valid_to: EpochDays | None = None
    status_ref: str
    recorded_at: EpochMillis | None = None  # since version 2 (RegistrationChange: 3)
    id_type: str | None = None  # since version 2 (RegistrationChange: 3)


class ClockTick(Event):
    schema_name: ClassVar[str] = "ClockTick"
    occurred_at: EpochMillis
    incomplete: tuple[str, ...] | None = None  # since version 2: gating sources below their watermark


SourceEvent = RosterChange | RegistrationChange | PaymentChange | HardshipStatusChange
LogEvent = SourceEvent | ClockTick
EVENT_TYPES: dict[str, type[Event]] = {
    cls.schema_name: cls for cls in (RosterChange, RegistrationChange, PaymentChange, HardshipStatusChange, ClockTick)
}
EventTypeName = Literal["RosterChange", "RegistrationChange", "PaymentChange", "HardshipStatusChange", "ClockTick"]


class RegistrationRef(Record):
    schema_name: ClassVar[str] = "RegistrationRef"
    enrollment_ref: str
    insurance_type: str
    pool: RegionCode
    region: RegionCode


class AlertDetails(Record):
    schema_name: ClassVar[str] = "AlertDetails"
    county: RegionCode
    masked_id: str
    school_code: str | None = None
    school_type: str | None = None
    student_ref: str | None = None
    expected_fen: int | None = None
    paid_fen: int | None = None
    benefit_start: EpochDays | None = None
    registrations: tuple[RegistrationRef, ...] = ()
    payment_refs: tuple[str, ...] = ()
    approval_pools: tuple[str, ...] = ()
    school_name: str | None = None  # since version 2
    incomplete_sources: tuple[str, ...] = ()  # since version 2
    lapsed_years: int | None = None  # since version 2
    repaired_years: int | None = None  # since version 2


class AlertRecord(Record):
    schema_name: ClassVar[str] = "AlertRecord"
    alert_id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    kind: AlertKind
    status: AlertStatus
    person_key: PersonKey
    coverage_year: int
    pool: RegionCode
    as_of: EpochMillis
    severity: Severity
    evidence: tuple[str, ...]
    details: AlertDetails


class FieldError(Record):
    schema_name: ClassVar[str] = "FieldError"
    field: str | None = None
    code: str
    message: str


class DeadLetter(Record):
    schema_name: ClassVar[str] = "DeadLetter"
    source: str
    origin: str
    file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error_code: str
    field: str | None = None
    message: str
    errors: tuple[FieldError, ...] = ()
    masked_id: str | None = None
    record: dict[str, str] = {}


class CoverageRecord(Record):
    schema_name: ClassVar[str] = "CoverageRecord"
    person_key: PersonKey
    coverage_year: int
    pool: RegionCode
    county: RegionCode
    school_code: str
    school_type: str
    on_roster: bool
    registered: bool
    covered: bool
    as_of: EpochMillis
    cause: str
    school_name: str | None = None  # since version 2
    continuous_years: int | None = None  # since version 2


class SourceWatermark(Record):
    schema_name: ClassVar[str] = "SourceWatermark"
    source: str
    complete_through: EpochMillis
    declared_at: EpochMillis
    origin: str


MODELS_BY_NAME: dict[str, type[Record]] = {
    **EVENT_TYPES,
    "AlertRecord": AlertRecord,
    "CoverageRecord": CoverageRecord,
    "DeadLetter": DeadLetter,
    "SourceWatermark": SourceWatermark,
}
