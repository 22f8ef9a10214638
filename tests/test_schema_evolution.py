"""Schema evolution (README "Changing schemas/"): every current schema reads every earlier version,
the compatibility check rejects what Confluent's BACKWARD rule rejects, and archives and messages
written with version 1 still decode, verify and replay."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import RECORD_NAMES, historical_schemas, load_schema
from schemas.codec import LOG_EVENT_NAMES, SINGLE_OBJECT_MARKER, decode_message, fingerprint, new_event
from schemas.compatibility import backward_problems
from schemas.models import RegistrationChange

V1 = historical_schemas("RegistrationChange")[0]


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_schema_reads_all_its_earlier_versions(name: str) -> None:
    for old in historical_schemas(name):
        assert backward_problems(load_schema(name), old) == []


def test_registration_change_has_a_version_2_with_an_optional_field() -> None:
    current = load_schema("RegistrationChange")
    assert "channel" not in {f["name"] for f in V1["fields"]}
    assert _field(current, "channel")["default"] is None
    assert fingerprint(current) != fingerprint(V1)


def _changed(change: Any) -> dict[str, Any]:
    schema = copy.deepcopy(load_schema("RegistrationChange"))
    change(schema)
    return schema


def _add_required(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "office", "type": "string"})


def _retype(schema: dict[str, Any]) -> None:
    _field(schema, "enrollment_ref")["type"] = "int"


def _drop_symbol(schema: dict[str, Any]) -> None:
    _field(schema, "action")["type"]["symbols"] = ["REGISTERED"]


def _rename(schema: dict[str, Any]) -> None:
    _field(schema, "enrollment_ref")["name"] = "registration_ref"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_add_required, "RegistrationChange.office: new field without a default"),
        (_retype, "RegistrationChange.enrollment_ref: type changed from string to int"),
        (_drop_symbol, "RegistrationChange.action: enum symbols removed without a default: CANCELLED"),
        (_rename, "RegistrationChange.registration_ref: new field without a default"),
    ],
    ids=["required-field", "type-change", "enum-symbol-removed", "rename-without-alias"],
)
def test_the_check_rejects_incompatible_changes(change: Any, problem: str) -> None:
    assert backward_problems(_changed(change), load_schema("RegistrationChange")) == [problem]


def test_the_check_accepts_compatible_changes() -> None:
    current = load_schema("RegistrationChange")

    def optional_field(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "office", "type": ["null", "string"], "default": None})

    def promote(schema: dict[str, Any]) -> None:
        _field(schema, "coverage_year")["type"] = "long"

    def add_symbol(schema: dict[str, Any]) -> None:
        _field(schema, "action")["type"]["symbols"].append("SUSPENDED")

    def alias(schema: dict[str, Any]) -> None:
        _rename(schema)
        _field(schema, "registration_ref")["aliases"] = ["enrollment_ref"]

    def drop_field(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "channel"]

    for change in (optional_field, promote, add_symbol, alias, drop_field):
        assert backward_problems(_changed(change), current) == [], change.__name__
    # Promotion goes one way only: long data cannot be read as int.
    assert backward_problems(current, _changed(promote)) == [
        "RegistrationChange.coverage_year: type changed from long to int"
    ]


def test_a_message_written_with_version_1_decodes_with_the_current_model() -> None:
    event = new_event(
        RegistrationChange, person_key="a" * 64, occurred_at=1_700_000_000_000, masked_id="450202********1234",
        insurance_type="RESIDENT", region="450202", coverage_year=2024, action="REGISTERED", enrollment_ref="CB-1",
    )  # fmt: skip
    body = io.BytesIO()
    datum = {k: v for k, v in event.model_dump().items() if k != "channel"}
    fastavro.schemaless_writer(body, fastavro.parse_schema(V1), datum)
    message = SINGLE_OBJECT_MARKER + fingerprint(V1) + body.getvalue()
    decoded = decode_message(message, ("RegistrationChange",))
    assert decoded == event and isinstance(decoded, RegistrationChange) and decoded.channel is None


def v1_log_schema() -> list[dict[str, Any]]:
    """The unified-log union as it was before RegistrationChange version 2."""
    return [V1 if name == "RegistrationChange" else load_schema(name) for name in LOG_EVENT_NAMES]


def test_the_log_schema_of_version_1_is_still_read() -> None:
    assert backward_problems([load_schema(n) for n in LOG_EVENT_NAMES], v1_log_schema()) == []
    assert V1 in v1_log_schema() and load_schema("RegistrationChange") not in v1_log_schema()


def test_an_archive_written_with_version_1_verifies_and_replays(tmp_path: Path) -> None:
    from audit.verify import VERIFIED, verify_archive
    from tests.live import Season
    from tests.test_audit import build_archive

    season = Season(tmp_path / "season", 300, seed=12)
    archive = build_archive(tmp_path, season, log_schema=v1_log_schema())
    segment = next((archive / "events").rglob("*.avro"))
    with segment.open("rb") as source:
        embedded = json.loads(fastavro.reader(source).metadata["avro.schema"])
    registration = next(s for s in embedded if s["name"].endswith("RegistrationChange"))
    assert "channel" not in {f["name"] for f in registration["fields"]}
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == VERIFIED, verdict.render()
    assert verdict.events == season.merged.count


def test_an_absent_optional_field_leaves_event_ids_unchanged() -> None:
    """Ids are digests of the canonical line, which omits nulls: records without the new field keep the
    id they had under version 1, so re-deliveries across the upgrade still match."""
    fields: dict[str, Any] = {
        "person_key": "b" * 64, "occurred_at": 1_700_000_000_000, "masked_id": "450202********1234",
        "insurance_type": "RESIDENT", "region": "450202", "coverage_year": 2024, "action": "REGISTERED",
        "enrollment_ref": "CB-2",
    }  # fmt: skip
    without = new_event(RegistrationChange, **fields)
    assert new_event(RegistrationChange, **fields, channel=None).event_id == without.event_id
    assert new_event(RegistrationChange, **fields, channel="school").event_id != without.event_id
