"""Writing spreadsheets people open in Excel: typed cells (numbers as numbers, times as Excel dates in
China Standard Time), column widths, a frozen header and an autofilter; and the two defences every
CSV and XLSX the project writes needs against what agencies typed:

- **Formula injection** (OWASP, CSV injection): a text cell that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return (or their full-width forms) would be a formula in Excel. In CSV
  it gets a leading ``'``; in XLSX it is written as a text cell with Excel's quote-prefix flag, so it
  stays text even when someone edits it, and its value is unchanged.
- **Reordered text**: bidirectional controls become U+FFFD, so a cell reads in the order it holds.
- **File names from data** (school and county codes): only letters, digits, ``-`` and ``_``
  survive, long names are cut, and any name that had to change gets a digest of the original, so
  two codes never share a file and no name can leave the output folder.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from connectors.fields import BIDI_CONTROLS
from schemas.times import CST

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
CellKind = Literal["text", "int", "money", "datetime", "date"]
NUMBER_FORMATS: dict[str, str] = {
    "int": "0",
    "money": "#,##0.00",
    "datetime": "yyyy-mm-dd hh:mm:ss",
    "date": "yyyy-mm-dd",
}
HEADER_FILL = PatternFill("solid", fgColor="DDE5F0")
MAX_WIDTH = 60
_SAFE_NAME = re.compile(r"[^0-9A-Za-z_-]+")
MAX_NAME = 64
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_BIDI_CONTROLS = re.compile(f"[{BIDI_CONTROLS}]")


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    kind: CellKind = "text"


def is_formula_like(text: str) -> bool:
    stripped = text.lstrip(" ")
    return bool(stripped) and stripped.startswith(FORMULA_TRIGGERS)


def inert(text: str) -> str:
    """A text cell for CSV: prefixed with ``'`` when Excel would take it for a formula; bidirectional
    controls shown as U+FFFD (``upright``)."""
    text = upright(text)
    return "'" + text if is_formula_like(text) else text


def upright(text: str) -> str:
    """Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) as U+FFFD: they
    would reorder what a person reads after them (a code beside a name, read backwards). The
    connectors refuse them; alert and event files made elsewhere, or before, can still hold them."""
    return _BIDI_CONTROLS.sub("\ufffd", text) if not text.isprintable() else text


def excel_text(text: str) -> str:
    """Characters XLSX cannot hold (control characters) become U+FFFD instead of failing the file, and
    so do bidirectional controls (``upright``)."""
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", upright(text))


def cst_datetime(epoch_ms: int) -> datetime:
    """An instant as the naive China Standard Time an Excel date holds (Excel has no time zones)."""
    return datetime.fromtimestamp(epoch_ms / 1000, CST).replace(tzinfo=None)


def csv_value(value: Any, kind: CellKind) -> str:
    if value is None:
        return ""
    if kind == "money":
        return f"{Decimal(value):.2f}"
    if kind == "datetime" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if kind == "date" and isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, str):
        return inert(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[Column], rows: Iterable[dict[str, Any]]) -> None:
    """UTF-8 with a byte-order mark (what Excel on Chinese Windows needs), every text cell inert."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(inert(column.header) for column in columns)
        for row in rows:
            writer.writerow(csv_value(row.get(column.key), column.kind) for column in columns)


def set_cell(sheet: Worksheet, row: int, column: int, value: Any, kind: CellKind = "text") -> None:
    """One typed cell; text is always a text cell, never a formula."""
    cell = sheet.cell(row=row, column=column)
    if value is None or value == "":
        return
    if isinstance(value, str):
        cell.value = excel_text(value)
        cell.data_type = "s"  # openpyxl would make "=..." a formula
        if is_formula_like(value):
            cell.quotePrefix = True
        return
    cell.value = value
    if kind in NUMBER_FORMATS:
        cell.number_format = NUMBER_FORMATS[kind]


def fill_sheet(sheet: Worksheet, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
    """Header in row 1 (bold, frozen, with an autofilter over the table), then one row per dict; widths
    from the longest value (CJK characters count double)."""
    widths = [_width(column.header) for column in columns]
    for number, column in enumerate(columns, start=1):
        set_cell(sheet, 1, number, column.header)
        header = sheet.cell(row=1, column=number)
        header.font = Font(bold=True)
        header.fill = HEADER_FILL
        header.alignment = Alignment(vertical="center", wrap_text=False)
    for row_number, row in enumerate(rows, start=2):
        for number, column in enumerate(columns, start=1):
            value = row.get(column.key)
            set_cell(sheet, row_number, number, value, column.kind)
            widths[number - 1] = max(widths[number - 1], _width(csv_value(value, column.kind)))
    for number, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(number)].width = min(MAX_WIDTH, width + 2)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(1, len(rows) + 1)}"


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


class FileNames:
    """Safe, unique file stems for codes that come from data."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def stem(self, prefix: str, code: str) -> str:
        safe = _SAFE_NAME.sub("_", code).strip("_-")[:MAX_NAME]
        if not safe or safe != code:
            safe = f"{safe or 'x'}-{hashlib.sha256(code.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
        stem = f"{prefix}-{safe}"
        candidate, n = stem, 1
        while candidate.lower() in self._used:
            n += 1
            candidate = f"{stem}-{n}"
        self._used.add(candidate.lower())
        return candidate


def inside(folder: Path, name: str) -> Path:
    """``folder/name``, refusing anything that would not be a plain file directly in ``folder``."""
    path = folder / name
    if path.parent.resolve() != folder.resolve() or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"unsafe file name {name!r}")
    return path


class SheetTitles:
    """Unique sheet titles (at most 31 characters, none of ``[]:*?/\\``) for codes that come from data."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._used = {title.lower() for title in taken}

    def title(self, text: str) -> str:
        base = excel_text(_SHEET_FORBIDDEN.sub("_", text)).strip("'") or "_"
        candidate, n = base[:31], 1
        while candidate.lower() in self._used:
            n += 1
            suffix = f"~{n}"
            candidate = base[: 31 - len(suffix)] + suffix
        self._used.add(candidate.lower())
        return candidate
