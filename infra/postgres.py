"""Connecting to PostgreSQL with one clear line when it cannot be done, never the password.

The connection string (``ENROLLBRIDGE_PG_DSN``) may hold a password, and libpq quotes what it could
not parse (a whole URI, or the token around a bad ``%`` escape): such quotes are left out of the
messages here.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from infra.errors import InputError

_QUOTED = re.compile(r'"[^"]*"?')


class PostgresUnavailable(InputError):
    """PostgreSQL could not be reached or refused the connection (the string itself was fine)."""


def one_line(error: BaseException, *secrets: str) -> str:
    """libpq's message on one line, without any of ``secrets``."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text


def connect(dsn: str, autocommit: bool = False, **options: Any) -> psycopg.Connection[Any]:
    """A connection; InputError for a malformed DSN, PostgresUnavailable when the server refuses.
    ``options`` are connection parameters (e.g. ``application_name``) the DSN does not set itself."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error as error:
        readable = _QUOTED.sub('"…"', one_line(error, dsn))
        raise InputError(f"ENROLLBRIDGE_PG_DSN is not a valid PostgreSQL connection string: {readable}") from None
    password = str(parts.get("password") or "")
    chosen = {name: value for name, value in options.items() if name not in parts}  # the DSN's own win
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **chosen)
    except psycopg.Error as error:
        raise PostgresUnavailable(f"cannot connect to PostgreSQL: {one_line(error, dsn, password)}") from None
