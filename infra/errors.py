"""Errors about what the user gave us; the command line shows them as one line and exits with 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class InputError(Exception):
    """A file, column, setting or argument that cannot be used. The message names what is wrong."""


def first_problem(error: ValidationError) -> str:
    """``field NAME: what is wrong`` of a record's first invalid field, in one line."""
    detail = error.errors(include_url=False, include_input=False)[0]
    field_name = ".".join(str(part) for part in detail["loc"]) or "record"
    return f"field {field_name}: {detail['msg']}"
