"""The worker's compiled encoders (``streams.live.avro_out``) write what ``encode_message`` writes, byte
for byte: for every field filled and empty, for extreme values, and for whatever a season's rules emit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode_message, encode_message
from schemas.models import AlertDetails, AlertRecord, CoverageRecord, LogEvent, RegistrationRef
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import load_policies
from streams.live.avro_out import compile_writer, encode_alert, encode_coverage
from tests.support import hardship, payment, registration, roster, tick

HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
REGION = st.text("0123456789", min_size=6, max_size=6)
TEXT = st.text(max_size=80)  # any Unicode, multi-byte included
LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)


def _optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


COVERAGE = st.builds(
    CoverageRecord,
    person_key=HEX, coverage_year=INT, pool=REGION, county=REGION, school_code=TEXT, school_type=TEXT,
    on_roster=st.booleans(), registered=st.booleans(), covered=st.booleans(), as_of=LONG, cause=TEXT,
    school_name=_optional(TEXT), continuous_years=_optional(INT),
)  # fmt: skip
DETAILS = st.builds(
    AlertDetails,
    county=REGION, masked_id=TEXT, school_code=_optional(TEXT), school_type=_optional(TEXT),
    student_ref=_optional(TEXT), expected_fen=_optional(LONG), paid_fen=_optional(LONG),
    benefit_start=_optional(INT),
    registrations=st.lists(
        st.builds(RegistrationRef, enrollment_ref=TEXT, insurance_type=TEXT, pool=REGION, region=REGION), max_size=70
    ).map(tuple),
    payment_refs=st.lists(TEXT, max_size=3).map(tuple), approval_pools=st.lists(REGION, max_size=3).map(tuple),
    school_name=_optional(TEXT), incomplete_sources=st.lists(TEXT, max_size=3).map(tuple),
    lapsed_years=_optional(INT), repaired_years=_optional(INT),
)  # fmt: skip
ALERTS = st.builds(
    AlertRecord,
    alert_id=HEX, kind=st.sampled_from(["UNENROLLED", "UNPAID", "DUPLICATE_ENROLLMENT", "WAITING_PERIOD"]),
    status=st.sampled_from(["OPEN", "RESOLVED"]), person_key=HEX, coverage_year=INT, pool=REGION, as_of=LONG,
    severity=st.sampled_from(["INFO", "LOW", "MEDIUM", "HIGH"]), evidence=st.lists(TEXT, max_size=5).map(tuple),
    details=DETAILS,
)  # fmt: skip


@settings(max_examples=300)
@given(COVERAGE)
def test_coverage_records_encode_as_encode_message_does(record: CoverageRecord) -> None:
    assert encode_coverage(record) == encode_message(record)


@settings(max_examples=300)
@given(ALERTS)
def test_alert_records_encode_as_encode_message_does(record: AlertRecord) -> None:
    assert encode_alert(record) == encode_message(record)


def test_what_a_season_of_rules_emits_encodes_as_encode_message_does() -> None:
    coverage: list[CoverageRecord] = []
    engine = Engine(load_policies(), MemoryStore(), coverage.append)
    events: list[LogEvent] = [
        roster("ann", "2023-09-01T08:00"),
        roster("bob", "2023-09-01T08:00", school="S2"),
        registration("bob", "2023-09-05T10:00", "E1"),
        registration("bob", "2023-09-06T10:00", "E2", region="450102"),
        payment("cat", "2023-09-20T10:00", "P1"),
        hardship("dan", "2023-09-02T10:00", "H1"),
        registration("dan", "2023-09-03T10:00", "E3"),
        payment("dan", "2023-09-04T10:00", "P2"),
        tick("2023-09-25T00:00"),
        tick("2023-10-01T00:00"),
        payment("bob", "2024-01-05T10:00", "P3"),
        tick("2024-01-10T00:00"),
    ]
    alerts = [alert for event in events for alert in engine.process(event)]
    assert alerts and coverage
    for alert in alerts:
        assert encode_alert(alert) == encode_message(alert)
        assert decode_message(encode_alert(alert), ("AlertRecord",)) == alert
    for change in coverage:
        assert encode_coverage(change) == encode_message(change)


@pytest.mark.parametrize(
    ("field_type", "refused"),
    [({"type": "map", "values": "string"}, "map"), (["string", "null"], "union"), ("double", "double"),
     ("enrollbridge.AlertKind", "AlertKind")],
)  # fmt: skip
def test_a_schema_with_a_type_it_cannot_write_is_refused_when_compiled(field_type: object, refused: str) -> None:
    schema = {"type": "record", "name": "X", "fields": [{"name": "f", "type": field_type}]}
    with pytest.raises(TypeError, match=refused):
        compile_writer(schema)
