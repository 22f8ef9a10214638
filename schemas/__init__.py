"""The inter-agency contract: Avro schemas (``*.avsc`` beside this file) and matching models."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent
NAMESPACE = "enrollbridge"
# Top-level records, one ``.avsc`` file each.
RECORD_NAMES = (
    "RosterChange",
    "RegistrationChange",
    "PaymentChange",
    "HardshipStatusChange",
    "ClockTick",
    "AlertRecord",
    "DeadLetter",
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON of ``schemas/<name>.avsc`` as written (logical types included)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    return schema
