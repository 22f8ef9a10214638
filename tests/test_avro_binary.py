"""The compiled Avro encoder (schemas/avro_binary.py) writes fastavro's bytes, byte for byte, for every
record type of the contract and at the edges of its encodings; what it does not support, it refuses."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from schemas import RECORD_NAMES, load_schema
from schemas.avro_binary import compile_encoder
from schemas.codec import (
    SINGLE_OBJECT_MARKER,
    decode_message,
    encode_message,
    fingerprint,
    parsed_schema,
    trusted_record,
)
from schemas.models import (
    AlertDetails,
    AlertRecord,
    ClockTick,
    CoverageRecord,
    DeadLetter,
    FieldError,
    Record,
    RegistrationRef,
)


def _fastavro(record: Record) -> bytes:
    out = io.BytesIO()
    datum = record.model_dump()
    datum = {k: list(v) if isinstance(v, tuple) else v for k, v in datum.items()}  # a tuple is a union branch
    fastavro.schemaless_writer(out, parsed_schema(record.schema_name), datum)
    return out.getvalue()


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_record_schema_of_the_contract_compiles(name: str) -> None:
    assert compile_encoder(parsed_schema(name)) is not None


def _alert(text: str, number: int, items: int) -> AlertRecord:
    small = number if -(2**31) <= number < 2**31 else 7  # for the Avro ints; ``number`` goes into the longs
    refs = tuple(
        RegistrationRef(enrollment_ref=f"{text}{i}", insurance_type="RESIDENT", pool="450200", region="450202")
        for i in range(items)
    )
    return trusted_record(
        AlertRecord,
        alert_id="a" * 64, kind="WAITING_PERIOD", status="OPEN", person_key="b" * 64, coverage_year=small,
        pool="450200", as_of=number, severity="INFO", evidence=tuple(f"e{i}" for i in range(items)),
        details=trusted_record(
            AlertDetails,
            county="450202", masked_id=text, school_code=None if items % 2 else text, school_type=None,
            student_ref=text, expected_fen=number, paid_fen=None if items % 2 else ~number,
            benefit_start=small, registrations=refs, payment_refs=(), approval_pools=(text,) * items,
            school_name=text or None, incomplete_sources=(), lapsed_years=small, repaired_years=None,
        ),
    )  # fmt: skip


TEXTS = ["", "x", "柳州市第1中学", "a" * 63, "b" * 64, "é" * 40, "🎓" * 100, "\u0000", "c" * 20_000]
NUMBERS = [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**62, 2**63 - 1, -(2**63)]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
@pytest.mark.parametrize("number", NUMBERS)
def test_edges_of_strings_ints_and_arrays_encode_as_fastavro_does(text: str, number: int) -> None:
    encode = compile_encoder(parsed_schema("AlertRecord"))
    assert encode is not None
    for items in (0, 1, 2, 63, 64, 200):
        record = _alert(text, number, items)
        assert encode(record) == _fastavro(record), (text[:10], number, items)


def test_maps_nested_arrays_of_records_booleans_and_nulls_encode_as_fastavro_does() -> None:
    letter = DeadLetter(
        source="tax", origin="file", file="缴费.csv", line=7, error_code="INVALID_FIELD", message="m",
        errors=(FieldError(field="amount", code="C", message="x"), FieldError(code="D", message="y")),
        record={"金额": "1,0", "": "", "k" * 70: "v" * 300},
    )  # fmt: skip
    coverage = CoverageRecord(
        person_key="c" * 64, coverage_year=2027, pool="450200", county="450202", school_code="s",
        school_type="PRIMARY", on_roster=False, registered=True, covered=False, as_of=-5, cause="d" * 32,
    )  # fmt: skip
    tick = ClockTick(event_id="e" * 32, occurred_at=1_700_000_000_000, incomplete=("tax", "insurance"))
    for record in (letter, letter.model_copy(update={"record": {}, "errors": ()}), coverage, tick,
                   tick.model_copy(update={"incomplete": None})):  # fmt: skip
        encode = compile_encoder(parsed_schema(record.schema_name))
        assert encode is not None
        assert encode(record) == _fastavro(record)


def test_encode_message_uses_it_and_the_message_decodes_back() -> None:
    record = _alert("柳州", 2024, 3)
    message = encode_message(record)
    assert message == SINGLE_OBJECT_MARKER + fingerprint(load_schema("AlertRecord")) + _fastavro(record)
    assert decode_message(message, ("AlertRecord",)) == AlertRecord.model_validate(record.model_dump())


def test_a_schema_it_does_not_support_is_left_to_fastavro() -> None:
    def schema(field_type: Any) -> Any:
        return fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "f", "type": field_type}]})

    assert compile_encoder(schema(["null", "string", "long"])) is None  # a union of three
    assert compile_encoder(schema("double")) is None
    assert compile_encoder(schema({"type": "fixed", "name": "F", "size": 4})) is None
    assert compile_encoder(schema({"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(65)]})) is None
    assert compile_encoder(schema({"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(64)]})) is not None
