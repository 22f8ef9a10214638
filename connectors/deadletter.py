"""Dead letters: records that could not become events, with the context to find and fix them.

Nothing written here may carry a raw identity number or a name: identity numbers are masked,
names dropped, and any run of digits shaped like an identity number is masked wherever it appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from connectors.fields import MISSING_FIELD, cell_text
from connectors.identity import mask, redact
from schemas.models import DeadLetter, FieldError

_NAME_FIELDS = frozenset({"name"})


def field_errors(error: ValidationError) -> list[FieldError]:
    """Validation failures as dead-letter field errors; input values are never echoed raw."""
    found: list[FieldError] = []
    for detail in error.errors(include_input=False, include_url=False):
        context = detail.get("ctx") or {}
        field = context.get("field") or (str(detail["loc"][0]) if detail["loc"] else None)
        code = detail["type"]
        if code == "missing":
            code, message = MISSING_FIELD, "required value is missing"
        elif code.isupper():
            message = detail["msg"]
        else:
            code, message = "BAD_VALUE", detail["msg"]
        found.append(
            FieldError(
                field=field, code=code, message=redact(f"{field}: {message}" if field else message, only_valid=False)
            )
        )
    return found


def masked_record(values: Mapping[str, Any]) -> dict[str, str]:
    """The record's fields as text, identity number masked, names left out."""
    record: dict[str, str] = {}
    for name, value in values.items():
        if name in _NAME_FIELDS:
            continue
        text = cell_text(value) or ""
        record[name] = mask(text) if name == "id_number" else redact(text, only_valid=False)
    return record


def record_dead_letter(
    source: str,
    origin: str,
    values: Mapping[str, Any],
    errors: list[FieldError],
    *,
    file: str | None = None,
    line: int | None = None,
) -> DeadLetter:
    """The dead letter of a record that could not become an event, wherever it was read."""
    raw_id = cell_text(values.get("id_number"))
    first = errors[0]
    return DeadLetter(
        source=source,
        origin=origin,
        file=file,
        line=line,
        error_code=first.code,
        field=first.field,
        message="; ".join(error.message for error in errors),
        errors=tuple(errors),
        masked_id=mask(raw_id) if raw_id else None,
        record=masked_record(values),
    )
