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
    "CoverageRecord",
    "DeadLetter",
    "SourceWatermark",
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON of ``schemas/<name>.avsc`` as written (logical types included)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    return schema


def historical_schemas(name: str) -> list[dict[str, Any]]:
    """Earlier versions of a record's schema (``schemas/history/<name>.v<N>.avsc``), oldest first.

    Messages and archives written with them must keep decoding; see "Changing schemas/" in the README.
    """
    paths = sorted((SCHEMA_DIR / "history").glob(f"{name}.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]
