"""Writing synthetic agency files as an agency would export them."""

from __future__ import annotations

import csv
import random
from collections import deque
from pathlib import Path
from typing import IO, Any

import orjson

from connectors.records import RECORD_TYPES
from infra.errors import InputError

FORMATS = ("csv", "jsonl", "xlsx")
XLSX_MAX_ROWS = 1_048_576
# A re-delivered row is written again within this many later rows of the same file.
REDELIVERY_WINDOW = 500


NAMED_SOURCES = ("education", "tax")  # the exports that carry the person's name


def column_names(source: str, headers: str) -> dict[str, str]:
    """Canonical field -> header written, in a reading order: identity, name, then the agency's own
    fields; the header is the field's first Chinese header or its canonical name."""
    model = RECORD_TYPES[source]
    order = ["id_number", *(["name"] if source in NAMED_SOURCES else []), *model.HEADERS]
    names = {name: name for name in order}
    if headers == "chinese":
        aliases = {**{"id_number": ("身份证号",), "name": ("姓名",)}, **model.HEADERS}
        names.update({name: aliases[name][0] for name in names if name in aliases})
    return names


class SourceFile:
    """One agency file; rows are dicts of canonical field -> text."""

    def __init__(self, out: Path, source: str, file_format: str, headers: str, rng: random.Random) -> None:
        self.source = source
        self.path = out / f"{source}.{file_format}"
        self.format = file_format
        self.columns = column_names(source, headers)
        self.rng = rng
        self.rows = 0
        self.redelivered = 0
        self._pending: deque[tuple[int, dict[str, str]]] = deque()
        self._handle: IO[Any] | None = None
        self._csv: Any = None
        self._workbook: Any = None
        self._sheet: Any = None
        if file_format == "csv":
            self._handle = self.path.open("w", encoding="utf-8-sig", newline="")
            self._csv = csv.writer(self._handle)
            self._csv.writerow(list(self.columns.values()))
        elif file_format == "jsonl":
            self._handle = self.path.open("wb")
        else:
            import openpyxl

            self._workbook = openpyxl.Workbook(write_only=True)
            self._sheet = self._workbook.create_sheet(source)
            self._sheet.append(list(self.columns.values()))

    def write(self, row: dict[str, str], redeliver: bool = False) -> None:
        self._emit(row)
        if redeliver:
            self._pending.append((self.rows + self.rng.randrange(1, REDELIVERY_WINDOW), row))
        while self._pending and self._pending[0][0] <= self.rows:
            self._emit(self._pending.popleft()[1])
            self.redelivered += 1

    def _emit(self, row: dict[str, str]) -> None:
        self.rows += 1
        if self.format == "csv":
            self._csv.writerow([row.get(name, "") for name in self.columns])
        elif self.format == "jsonl":
            assert self._handle is not None
            self._handle.write(orjson.dumps({self.columns[k]: v for k, v in row.items()}) + b"\n")
        else:
            if self.rows >= XLSX_MAX_ROWS:
                raise InputError(f"{self.path}: more rows than an XLSX sheet holds; use --format csv")
            self._sheet.append([row.get(name) or None for name in self.columns])

    def close(self) -> None:
        while self._pending:
            self._emit(self._pending.popleft()[1])
            self.redelivered += 1
        if self._handle is not None:
            self._handle.close()
        if self._workbook is not None:
            self._workbook.save(self.path)
