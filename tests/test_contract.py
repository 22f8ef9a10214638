"""The Avro contract: every schema parses and documents itself; models match schemas field for field;
every model round-trips through Avro binary and through its canonical JSON line without loss."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import RECORD_NAMES, SCHEMA_DIR, load_schema
from schemas.codec import (
    canonical_dict,
    decode_avro,
    decode_log_event,
    encode_avro,
    encode_log_event,
    event_from_json,
    event_id_of,
    new_event,
    read_event_container,
    to_json_line,
    write_event_container,
)
from schemas.models import (
    EVENT_TYPES,
    AlertDetails,
    AlertKind,
    AlertRecord,
    AlertStatus,
    ClockTick,
    CoverageRecord,
    DeadLetter,
    FieldError,
    HardshipCategory,
    HardshipStatusChange,
    InsuranceType,
    PaymentChange,
    RegistrationChange,
    RegistrationRef,
    RosterChange,
    SchoolType,
    Severity,
    SourceWatermark,
)

NESTED: dict[str, type[BaseModel]] = {
    "AlertDetails": AlertDetails,
    "RegistrationRef": RegistrationRef,
    "FieldError": FieldError,
}
MODELS: dict[str, type[BaseModel]] = {
    "RosterChange": RosterChange,
    "RegistrationChange": RegistrationChange,
    "PaymentChange": PaymentChange,
    "HardshipStatusChange": HardshipStatusChange,
    "ClockTick": ClockTick,
    "AlertRecord": AlertRecord,
    "CoverageRecord": CoverageRecord,
    "DeadLetter": DeadLetter,
    "SourceWatermark": SourceWatermark,
}


def _records(schema: Any) -> list[dict[str, Any]]:
    """Every record schema nested anywhere in a schema."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            found.append(schema)
        for value in schema.values():
            found += _records(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _records(value)
    return found


def test_every_schema_file_is_listed_and_parses() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")) == sorted(RECORD_NAMES)
    for name in RECORD_NAMES:
        parsed = fastavro.parse_schema(load_schema(name))
        assert isinstance(parsed, dict) and parsed["name"] == f"enrollbridge.{name}"


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_record_and_field_has_a_namespace_or_parent_and_a_doc(name: str) -> None:
    schema = load_schema(name)
    assert schema["namespace"] == "enrollbridge"
    for record in _records(schema):
        assert record.get("doc"), f"{record['name']} has no doc"
        for field in record["fields"]:
            assert field.get("doc"), f"{record['name']}.{field['name']} has no doc"


def _model_fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_models_match_schemas_field_for_field(name: str) -> None:
    for record in _records(load_schema(name)):
        model = MODELS.get(record["name"]) or NESTED[record["name"]]
        assert _model_fields(model) == [field["name"] for field in record["fields"]], record["name"]


@pytest.mark.parametrize(
    ("enum", "schema", "field"),
    [
        (SchoolType, "RosterChange", "school_type"),
        (InsuranceType, "RegistrationChange", "insurance_type"),
        (HardshipCategory, "HardshipStatusChange", "category"),
        (AlertKind, "AlertRecord", "kind"),
        (AlertStatus, "AlertRecord", "status"),
        (Severity, "AlertRecord", "severity"),
    ],
)
def test_python_enums_match_schema_symbols(enum: Any, schema: str, field: str) -> None:
    [definition] = [f for f in load_schema(schema)["fields"] if f["name"] == field]
    assert [member.value for member in enum] == definition["type"]["symbols"]


# -- round trips ----------------------------------------------------------------------------------

hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
region = st.from_regex(r"[1-6][0-9]{5}", fullmatch=True)
instant = st.integers(min_value=-(10**12), max_value=4 * 10**12)
day = st.integers(min_value=-20_000, max_value=60_000)
text = st.text(min_size=1, max_size=12)
maybe_text = st.none() | text


def _enum(values: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([member.value for member in values])


person = {"event_id": hex32, "person_key": hex64, "occurred_at": instant, "masked_id": text}
event_strategies: dict[str, st.SearchStrategy[Any]] = {
    "RosterChange": st.builds(
        RosterChange,
        **person,
        school_code=text,
        school_name=maybe_text,
        school_type=_enum(SchoolType),
        school_region=region,
        action=st.sampled_from(["ENROLLED", "LEFT"]),
        student_ref=text,
    ),
    "RegistrationChange": st.builds(
        RegistrationChange,
        **person,
        insurance_type=_enum(InsuranceType),
        region=region,
        coverage_year=st.integers(1990, 2100),
        action=st.sampled_from(["REGISTERED", "CANCELLED"]),
        enrollment_ref=text,
    ),
    "PaymentChange": st.builds(
        PaymentChange,
        **person,
        coverage_year=st.integers(1990, 2100),
        amount_fen=st.integers(0, 10**9),
        region=region,
        action=st.sampled_from(["PAID", "REFUNDED"]),
        payment_ref=text,
        channel=maybe_text,
    ),
    "HardshipStatusChange": st.builds(
        HardshipStatusChange,
        **person,
        category=_enum(HardshipCategory),
        approval_region=region,
        action=st.sampled_from(["CERTIFIED", "REVOKED"]),
        valid_from=day,
        valid_to=st.none() | day,
        status_ref=text,
    ),
    "ClockTick": st.builds(ClockTick, event_id=hex32, occurred_at=instant),
}
any_event = st.one_of(*event_strategies.values())
alert = st.builds(
    AlertRecord,
    alert_id=hex64,
    kind=_enum(AlertKind),
    status=_enum(AlertStatus),
    person_key=hex64,
    coverage_year=st.integers(1990, 2100),
    pool=region,
    as_of=instant,
    severity=_enum(Severity),
    evidence=st.lists(hex32, max_size=4).map(tuple),
    details=st.builds(
        AlertDetails,
        county=region,
        masked_id=text,
        school_code=maybe_text,
        school_type=maybe_text,
        student_ref=maybe_text,
        expected_fen=st.none() | st.integers(0, 10**7),
        paid_fen=st.none() | st.integers(0, 10**7),
        benefit_start=st.none() | day,
        registrations=st.lists(
            st.builds(RegistrationRef, enrollment_ref=text, insurance_type=text, pool=region, region=region), max_size=3
        ).map(tuple),
        payment_refs=st.lists(text, max_size=3).map(tuple),
        approval_pools=st.lists(region, max_size=2).map(tuple),
    ),
)
coverage = st.builds(
    CoverageRecord,
    person_key=hex64,
    coverage_year=st.integers(1990, 2100),
    pool=region,
    county=region,
    school_code=text,
    school_type=text,
    on_roster=st.booleans(),
    registered=st.booleans(),
    covered=st.booleans(),
    as_of=instant,
    cause=hex32,
)
dead_letter = st.builds(
    DeadLetter,
    source=text,
    origin=text,
    file=maybe_text,
    line=st.none() | st.integers(1, 10**9),
    topic=maybe_text,
    partition=st.none() | st.integers(0, 1000),
    offset=st.none() | st.integers(0, 10**12),
    error_code=text,
    field=maybe_text,
    message=text,
    errors=st.lists(st.builds(FieldError, field=maybe_text, code=text, message=text), max_size=3).map(tuple),
    masked_id=maybe_text,
    record=st.dictionaries(text, st.text(max_size=10), max_size=4),
)


@settings(max_examples=200)
@given(any_event)
def test_events_round_trip_through_the_log_encoding_and_the_json_line(event: Any) -> None:
    assert decode_log_event(encode_log_event(event)) == event
    assert decode_avro(type(event), encode_avro(event)) == event
    assert event_from_json(orjson.loads(to_json_line(event))) == event


@settings(max_examples=100)
@given(alert)
def test_alert_records_round_trip(record: AlertRecord) -> None:
    assert decode_avro(AlertRecord, encode_avro(record)) == record
    assert AlertRecord.model_validate_json(to_json_line(record)) == record


@settings(max_examples=100)
@given(coverage)
def test_coverage_records_round_trip(record: CoverageRecord) -> None:
    assert decode_avro(CoverageRecord, encode_avro(record)) == record
    assert CoverageRecord.model_validate_json(to_json_line(record)) == record


@settings(max_examples=100)
@given(dead_letter)
def test_dead_letters_round_trip(record: DeadLetter) -> None:
    assert decode_avro(DeadLetter, encode_avro(record)) == record
    assert DeadLetter.model_validate_json(to_json_line(record)) == record


@settings(max_examples=20)
@given(st.lists(any_event, max_size=20))
def test_event_container_files_round_trip(events: list[Any]) -> None:
    buffer = io.BytesIO()
    assert write_event_container(buffer, events) == len(events)
    buffer.seek(0)
    assert list(read_event_container(buffer)) == events


def test_canonical_line_shape_and_event_id() -> None:
    event = new_event(
        PaymentChange,
        person_key="a" * 64,
        occurred_at=1704036600000,
        masked_id="450202********0011",
        coverage_year=2024,
        amount_fen=38000,
        region="450202",
        action="PAID",
        payment_ref="P1",
    )
    body = orjson.loads(to_json_line(event))
    assert list(body)[:4] == ["event_id", "type", "person_key", "occurred_at"]
    assert body["type"] == "PaymentChange" and body["occurred_at"] == "2023-12-31T23:30:00.000+08:00"
    assert "channel" not in body  # nulls are left out
    assert event.event_id == event_id_of(body)
    changed = new_event(PaymentChange, **{**event.model_dump(exclude={"event_id"}), "amount_fen": 38001})
    assert changed.event_id != event.event_id
    assert canonical_dict(event)["event_id"] == event.event_id


def test_every_event_type_is_in_the_log_union() -> None:
    names = {schema["name"] for schema in (load_schema(n) for n in EVENT_TYPES)}
    assert names == set(EVENT_TYPES)
