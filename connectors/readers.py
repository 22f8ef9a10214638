"""Reading agency files (CSV, XLSX, JSON Lines) as rows keyed by canonical column names.

Each row keeps its line number (CSV and JSON Lines: the physical line where the record starts,
header = line 1; XLSX: the sheet row) so every dead letter can point at it, and the header its file
uses for each column, so messages name columns as the agency does. A file that cannot be read at
all, or lacks a required column, raises ``InputError`` before any row is produced.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, NamedTuple

import orjson

from connectors.fields import FIELD_MAX, cell_text, printable
from connectors.identity import redact
from infra.errors import InputError

_SNIFF_BYTES = 1 << 20
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_IGNORED_LISTED = 20  # unknown columns named in the summary; a hostile file may have millions


class Row(NamedTuple):
    """One record as read: its line and its values under canonical names.

    ``problem`` is set when the line could not be read as a record at all (bad JSON, too many
    cells); such a row still counts as read and becomes a dead letter. ``labels`` maps canonical
    column names to the file's own headers where they differ; ``end_line`` is the last physical
    line of a CSV record that spans several (a quoted cell holding line breaks, or never closed).
    A named tuple: one is made per record, in a third of a frozen dataclass's time.
    """

    line: int
    values: Mapping[str, object]
    problem: tuple[str, str] | None = None
    labels: Mapping[str, str] = MappingProxyType({})
    end_line: int | None = None


@dataclass
class RowFile:
    """An opened agency file: its rows, its size for progress, and what it ignored."""

    path: Path
    format: str
    rows: Iterator[Row]
    size: int
    position: Callable[[], int]
    ignored_columns: list[str] = field(default_factory=list)
    blank_lines: int = 0
    more_ignored: bool = False
    # A CSV file's layout and where its records begin (byte offset, line): enough for other
    # processes to read parts of it. None for the other formats, which this process reads.
    layout: CsvLayout | None = None
    body: tuple[int, int] | None = None
    close: Callable[[], None] = lambda: None  # lets go of the file when its rows were not all read

    def ignore(self, column: str) -> None:
        """Note an unknown column for the summary: the first few, each shown safely and cut short.
        A header cell can hold somebody's identity number (a data row pasted above the header): it is
        masked, full-width digits too (NFKC, as cells are; the whole of one an identity number that
        the cut would split)."""
        seen = unicodedata.normalize("NFKC", column[: FIELD_MAX + 18])
        shown = printable(redact(seen, only_valid=False), FIELD_MAX, len(column))
        if shown in self.ignored_columns:
            return
        if len(self.ignored_columns) < _IGNORED_LISTED:
            self.ignored_columns.append(shown)
        else:
            self.more_ignored = True


def detect_format(path: Path) -> str:
    file_format = _FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise InputError(f"{path}: unknown file type {path.suffix!r}; use .csv, .xlsx or .jsonl")
    return file_format


def open_rows(path: Path, header_names: dict[str, str], required: list[str], encoding: str | None = None) -> RowFile:
    """Open an agency file; ``header_names`` maps every accepted header to its canonical name."""
    file_format = detect_format(path)
    try:
        size = path.stat().st_size
        if file_format == "xlsx":
            return _open_xlsx(path, header_names, required, size)
        raw = path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text_encoding = encoding or _sniff_encoding(path, raw)
        if file_format == "csv":
            return _open_csv(path, raw, text_encoding, header_names, required, size)
        return _open_jsonl(path, raw, text_encoding, header_names, size)
    except BaseException:  # a header refused, an encoding not known: the file is let go at once
        raw.close()
        raise


def _sniff_encoding(path: Path, raw: IO[bytes]) -> str:
    """UTF-8 (with or without BOM) unless the start of the file is not UTF-8; then GB18030, as Excel in China writes."""
    head = raw.read(_SNIFF_BYTES)
    raw.seek(0)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "gb18030"
    return "utf-8-sig"


def _decoded_lines(
    path: Path, raw: IO[bytes], encoding: str, consumed: list[int], first_line: int = 1
) -> Iterator[str]:
    """Lines of text, counting bytes read for progress; a decoding error names the line.

    ``first_line`` is the number of the line ``raw`` is at (a worker reads from the middle of a file)."""
    decoder_name = "utf-8" if encoding == "utf-8-sig" else encoding
    for number, line in enumerate(raw, start=first_line):
        consumed[0] += len(line)
        if number == 1 and encoding == "utf-8-sig" and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield line.decode(decoder_name)
        except UnicodeDecodeError:
            raise InputError(f"{path}:{number}: not valid {decoder_name} text; pass --encoding") from None


def _map_header(
    path: Path, header: list[str], header_names: dict[str, str], required: list[str], header_line: int = 1
) -> tuple[list[str | None], list[str], dict[str, str]]:
    """Each header cell's canonical column (None when unknown), the unknown headers, and the file's own
    header of each canonical column where it differs. A column given twice (``amount`` and 缴费金额, or
    the same header again) is refused: which of its cells holds a record's value is not clear."""
    canonical: list[str | None] = []
    ignored: list[str] = []
    labels: dict[str, str] = {}
    seen: dict[str, str] = {}
    for cell in header:
        text = (cell_text(cell) or "").lstrip("\ufeff")
        name = header_names.get(text) or header_names.get(text.lower())
        if name is None:
            if text:
                ignored.append(text)
            canonical.append(None)
            continue
        if name in seen:
            given = _both(seen[name], text)
            raise InputError(f"{path}:{header_line}: the header names the column {name} {given}: keep one of them")
        seen[name] = text
        canonical.append(name)
        if text != name:
            labels[name] = text
    missing = [name for name in required if name not in seen]
    if missing:
        chinese = any(not label.isascii() for label in labels.values())
        named = ", ".join(_column_label(name, header_names, chinese=chinese) for name in missing)
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {named}")
    return canonical, ignored, labels


def _both(first: str, second: str) -> str:
    """The two headers (or keys) that name one column, as a message shows them: ``'amount' and '缴费金额'``,
    or ``'缴费金额' twice``; each safe to show and cut short."""
    first, second = printable(first, FIELD_MAX), printable(second, FIELD_MAX)
    return f"{first!r} twice" if first == second else f"{first!r} and {second!r}"


def _column_label(name: str, header_names: dict[str, str], *, chinese: bool) -> str:
    """A column as the file would name it (its Chinese header when the file uses those), with the other name."""
    alias = next((header for header, canonical in header_names.items() if canonical == name and header != name), None)
    if alias is None:
        return name
    return f"{alias} ({name})" if chinese else f"{name} ({alias})"


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV file's records become rows: each header cell's canonical column (None for one
    ignored), and the file's own header of each column where it differs. Small and picklable, so a
    worker process can read part of the file the way this process would."""

    path: Path
    encoding: str
    columns: tuple[str | None, ...]
    labels: Mapping[str, str]
    cell_limit: int = field(default_factory=csv.field_size_limit)  # this process's, for a worker to read with

    def rows(
        self, reader: Iterator[list[str]], line_num: Callable[[], int], base: int, stop: int | None
    ) -> Iterator[Row]:
        """The rows of ``reader``'s records; lines are numbered ``base`` + the reader's count.
        With ``stop``, no record is begun once ``stop`` lines were read (the rest of a record begun
        before is still read). Blank records are yielded as None-valued markers: see ``BLANK``."""
        width = len(self.columns)
        named = [name for name in self.columns if name]
        every_column_known = len(named) == width
        labels = self.labels
        start = base + line_num() + 1
        while stop is None or line_num() < stop:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                end = base + line_num()
                span = f"lines {start}-{end}" if end > start else f"line {start}"
                detail = str(error)
                if "field limit" in detail:
                    # A giant cell, or a quote never closed that swallowed the lines after it:
                    # the dead letter says which lines went into it.
                    detail = f"a cell longer than {csv.field_size_limit():,} characters"
                    detail += " (a quote not closed?)" if end > start else ""
                yield Row(start, {}, ("BAD_ROW", f"unreadable CSV ({span}): {detail}"), end_line=end)
                start = end + 1
                continue
            end = base + line_num()
            line, start = start, end + 1
            if not "".join(cells).strip():  # every cell blank
                yield BLANK
                continue
            spans = end if end > line else None
            if every_column_known and len(cells) == width:  # most rows: the fast way to the same dict
                yield Row(line, dict(zip(named, cells, strict=True)), None, labels, spans)
                continue
            values = {name: cell for name, cell in zip(self.columns, cells, strict=False) if name}
            if len(cells) > width:
                problem = ("BAD_ROW", f"row has {len(cells)} cells but the header has {width}")
                yield Row(line, values, problem, labels, spans)
            else:
                yield Row(line, values, None, labels, spans)

    def piece(self, offset: int, first_line: int, lines: int) -> Piece:
        """The rows of the records that begin in ``lines`` lines of the file from byte ``offset``
        (line ``first_line``), read in this process: what a worker does with its share."""
        consumed = [0]
        csv.field_size_limit(self.cell_limit)  # a worker started afresh (by a fork server) has the default
        with self.path.open("rb") as raw:
            raw.seek(offset)
            text = _decoded_lines(self.path, raw, self.encoding, consumed, first_line)
            reader = csv.reader(text)
            piece = Piece([], 0, offset, first_line - 1)
            try:
                for row in self.rows(reader, lambda: reader.line_num, first_line - 1, lines):
                    if row is BLANK:
                        piece.blank_lines += 1
                    else:
                        piece.rows.append(row)
            except InputError as error:  # the rows before it still count; the reader reports it after them
                piece.failure = str(error)
            piece.end_offset = offset + consumed[0]
            piece.end_line = first_line - 1 + reader.line_num
        return piece


@dataclass
class Piece:
    """What a run of a file's lines gave: its rows, blank lines, where reading stopped (byte offset
    and line: past the run when a record begun in it went on), and the error that stopped it."""

    rows: list[Row]
    blank_lines: int
    end_offset: int
    end_line: int
    failure: str | None = None


BLANK = Row(0, MappingProxyType({}))
"""Marks a record whose cells are all blank: skipped, and counted as a blank line."""


def split_lines(path: Path, offset: int, first_line: int, size: int) -> Iterator[tuple[int, int, int]]:
    """The part of a file from ``offset`` (line ``first_line``) cut into runs of whole lines of about
    ``size`` bytes: each run's byte offset, its first line and its number of lines. Only counts
    bytes, at the speed of reading them."""
    with path.open("rb") as raw:
        raw.seek(offset)
        while block := raw.read(size):
            if not block.endswith(b"\n"):
                block += raw.readline()  # to the end of the line (or of the file)
            lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            yield offset, first_line, lines
            offset += len(block)
            first_line += lines


def _open_csv(
    path: Path, raw: IO[bytes], encoding: str, header_names: dict[str, str], required: list[str], size: int
) -> RowFile:
    consumed = [0]
    lines = _decoded_lines(path, raw, encoding, consumed)
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty file, expected a header row") from None
    except csv.Error as error:
        raise InputError(f"{path}:1: cannot read the header: {error}") from None
    columns, ignored, labels = _map_header(path, header, header_names, required)
    row_file = RowFile(path, "csv", iter(()), size, lambda: consumed[0], close=raw.close)
    for column in ignored:
        row_file.ignore(column)
    layout = CsvLayout(path, encoding, tuple(columns), labels)
    row_file.layout, row_file.body = layout, (consumed[0], reader.line_num + 1)

    def rows() -> Iterator[Row]:
        with raw:
            for row in layout.rows(reader, lambda: reader.line_num, 0, None):
                if row is BLANK:
                    row_file.blank_lines += 1
                else:
                    yield row

    row_file.rows = rows()
    return row_file


def _open_jsonl(path: Path, raw: IO[bytes], encoding: str, header_names: dict[str, str], size: int) -> RowFile:
    consumed = [0]
    lines = _decoded_lines(path, raw, encoding, consumed)
    row_file = RowFile(path, "jsonl", iter(()), size, lambda: consumed[0], close=raw.close)

    def rows() -> Iterator[Row]:
        with raw:
            for line, text in enumerate(lines, start=1):
                if not text.strip():
                    row_file.blank_lines += 1
                    continue
                try:
                    obj = orjson.loads(text)
                except orjson.JSONDecodeError as error:
                    yield Row(line, {}, ("BAD_JSON", f"not valid JSON: {error.msg}"))
                    continue
                if not isinstance(obj, dict):
                    yield Row(line, {}, ("BAD_JSON", f"expected a JSON object, got {type(obj).__name__}"))
                    continue
                values, labels, unknown, problem = map_record(obj, header_names, repeated_key(repeated_keys(text, obj)))
                for key in unknown:
                    row_file.ignore(key)
                yield Row(line, values, problem, labels)

    row_file.rows = rows()
    return row_file


def map_record(
    obj: Mapping[str, object], header_names: Mapping[str, str], repeated: str | None = None
) -> tuple[dict[str, object], dict[str, str], list[str], tuple[str, str] | None]:
    """A JSON record's values under canonical names, the keys it used where they differ from those
    names, the keys that name no known column, and the record's problem (``Row.problem``) when it
    gives a column twice (``amount`` and 缴费金额, or a key ``repeated`` in its text, which the parsed
    object no longer shows): which value it means is not clear."""
    values: dict[str, object] = {}
    labels: dict[str, str] = {}
    unknown: list[str] = []
    problem: tuple[str, str] | None = None
    twice = header_names.get(cell_text(repeated) or "") if repeated is not None else None
    if twice is not None:
        problem = ("BAD_ROW", f"the column {twice} is given twice ({_both(str(repeated), str(repeated))})")
    for key, value in obj.items():
        text = cell_text(key) or ""
        name = header_names.get(text)
        if name is None:
            unknown.append(str(key))
            continue
        if name in values and problem is None:
            problem = ("BAD_ROW", f"the column {name} is given twice ({_both(labels.get(name, name), text)})")
        values[name] = _json_scalar(value)
        if text != name:
            labels[name] = text
    return values, labels, unknown, problem


# What ends a key in JSON text: a repeated key is counted twice here, once in the parsed object.
_KEY_ENDS = re.compile(r'"\s*:')


class _Keys(dict[str, Any]):
    """A JSON object parsed again to find its first repeated key."""

    repeated: str | None = None


def _remember_repeats(pairs: list[tuple[str, Any]]) -> _Keys:
    keys = _Keys()
    for key, value in pairs:
        if key in keys and keys.repeated is None:
            keys.repeated = key
        keys[key] = value
    return keys


def repeated_keys(text: str | bytes, parsed: object) -> object:
    """``parsed`` (orjson's reading of ``text``, which keeps the last of two equal keys silently) read
    again with every object's first repeated key in ``repeated_key``'s reach -- or ``parsed`` itself
    when the text cannot repeat one: it has no more key ends than ``parsed`` has keys (nested objects'
    keys counted), which is every ordinary record, so the second reading is paid only for a repeat or
    for an escaped quote before a colon inside a string."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if len(_KEY_ENDS.findall(text)) <= _key_count(parsed):
        return parsed
    try:
        return json.loads(text, object_pairs_hook=_remember_repeats)
    except ValueError:  # orjson read it: nothing more to find than what it found
        return parsed


def repeated_key(obj: object) -> str | None:
    """The first key given twice in a JSON object read by ``repeated_keys``, else None."""
    return obj.repeated if isinstance(obj, _Keys) else None


def _key_count(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(item) for item in value.values())
    if isinstance(value, list):
        return sum(_key_count(item) for item in value)
    return 0


def _json_scalar(value: object) -> object:
    """JSON values as cells; arrays and objects become their JSON text so validation rejects them by type."""
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


def _open_xlsx(path: Path, header_names: dict[str, str], required: list[str], size: int) -> RowFile:
    import openpyxl  # imported here: only spreadsheet users pay for it

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises BadZipFile, KeyError, InvalidFileException, ...
        raise InputError(f"{path}: not a readable XLSX workbook ({type(error).__name__})") from None
    sheet = workbook.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    header_row = 0
    header: list[str] = []
    for cells in values:
        header_row += 1
        if any(cell not in (None, "") for cell in cells):
            header = [str(cell) if cell is not None else "" for cell in cells]
            break
    if not header:
        workbook.close()
        raise InputError(f"{path}: empty sheet {sheet.title!r}, expected a header row")
    try:
        columns, ignored, labels = _map_header(path, header, header_names, required, header_row)
    except InputError:
        workbook.close()
        raise
    total_rows = max(sheet.max_row or 1, 1)
    done = [header_row]
    row_file = RowFile(path, "xlsx", iter(()), total_rows, lambda: done[0])
    for column in ignored:
        row_file.ignore(column)

    def rows() -> Iterator[Row]:
        try:
            for line, cells in enumerate(values, start=header_row + 1):
                done[0] = line
                if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells):
                    row_file.blank_lines += 1
                    continue
                mapped = {name: cell for name, cell in zip(columns, cells, strict=False) if name}
                extra = [cell for cell in cells[len(columns) :] if cell is not None]
                if extra:
                    problem = ("BAD_ROW", f"row has cells beyond the header's {len(columns)} columns")
                    yield Row(line, mapped, problem, labels)
                else:
                    yield Row(line, mapped, None, labels)
        finally:
            workbook.close()

    row_file.rows = rows()
    return row_file
