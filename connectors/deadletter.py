"""Dead letters: records that could not become events, with the context to find and fix them.

Nothing written here may carry a raw identity number or a name: identity numbers are masked,
names dropped, and any run of digits shaped like an identity number is masked wherever it appears.
A dead letter stays small whatever it describes: the record's copy keeps at most ``COPY_MAX``
characters of each known column (control characters shown as ``\\uNNNN``), and messages at most
``MESSAGE_MAX``, so one never comes near Kafka's 1 MiB message limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from connectors.fields import MISSING_FIELD, cell_text, printable
from connectors.identity import mask, redact
from schemas.models import DeadLetter, FieldError

COPY_MAX = 200
MESSAGE_MAX = 400
_NAME_FIELDS = frozenset({"name"})


def field_errors(error: ValidationError, labels: Mapping[str, str] | None = None) -> list[FieldError]:
    """Validation failures as dead-letter field errors; input values are never echoed raw.

    ``labels`` maps a canonical column to the header the agency's file uses for it (学籍号 for
    ``student_ref``), so each message names the column both ways.
    """
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
        label = (labels or {}).get(field) if field else None
        named = f"{field} ({label})" if label else field
        text = redact(f"{named}: {message}" if named else message, only_valid=False)
        found.append(FieldError(field=field, code=code, message=printable(text, MESSAGE_MAX)))
    return found


def _copy(value: Any, *, identity: bool = False) -> str:
    """A cell as the dead letter keeps it: normalised, identity numbers masked, cut to ``COPY_MAX``."""
    if isinstance(value, str) and len(value) > 4 * COPY_MAX:  # NFKC and masking of what is cut off anyway
        length = len(value)
        text = cell_text(value[: 4 * COPY_MAX]) or ""
    else:
        text = cell_text(value) or ""
        length = len(text)
    return printable(mask(text) if identity else redact(text, only_valid=False), COPY_MAX, length)


def masked_record(values: Mapping[str, Any]) -> dict[str, str]:
    """The record's fields as text, identity number masked, names left out, each value cut short."""
    return {
        name: _copy(value, identity=name == "id_number") for name, value in values.items() if name not in _NAME_FIELDS
    }


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
    raw_id = values.get("id_number")
    masked_id = _copy(raw_id, identity=True) if raw_id is not None else ""
    first = errors[0]
    return DeadLetter(
        source=source,
        origin=origin,
        file=file,
        line=line,
        error_code=first.code,
        field=first.field,
        message=printable("; ".join(error.message for error in errors), 4 * MESSAGE_MAX),
        errors=tuple(errors),
        masked_id=masked_id or None,
        record=masked_record(values),
    )
