"""What the HTTP services (the push source and the dashboard) share about tokens."""

from __future__ import annotations

MIN_TOKEN_LENGTH = 16  # a shorter token can be guessed; refused when configured


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; the scheme is case-insensitive (RFC 7235)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
