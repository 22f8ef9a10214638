"""File source connector: agency files in, events and dead letters out, every record accounted for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from connectors.deadletter import field_errors, record_dead_letter
from connectors.identity import Secret
from connectors.readers import Row, RowFile, open_rows
from connectors.records import RECORD_TYPES, SourceRecord
from infra.errors import InputError
from schemas.models import DeadLetter, FieldError, SourceEvent

EventSink = Callable[[SourceEvent], None]
DeadLetterSink = Callable[[DeadLetter], None]


@dataclass
class FileCounts:
    """What one file gave: read = accepted + rejected always holds."""

    path: str
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    blank_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class IngestSummary:
    source: str
    files: list[FileCounts]

    @property
    def read(self) -> int:
        return sum(f.read for f in self.files)

    @property
    def accepted(self) -> int:
        return sum(f.accepted for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)


class VersionTimes:
    """Passes events on and remembers the latest version time among them: how far a file ingest can
    declare its source complete (SPEC: by default, the latest version time in the file)."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self.latest: int | None = None

    def event(self, event: SourceEvent) -> None:
        version = event.version_time
        if self.latest is None or version > self.latest:
            self.latest = version
        self.on_event(event)


def record_type(source: str) -> type[SourceRecord]:
    try:
        return RECORD_TYPES[source]
    except KeyError:
        raise InputError(f"unknown source {source!r}; expected one of {', '.join(RECORD_TYPES)}") from None


def convert_row(model: type[SourceRecord], row: Row, secret: Secret) -> SourceEvent | list[FieldError]:
    """One row to its event, or to the list of what is wrong with it."""
    if row.problem is not None:
        code, message = row.problem
        return [FieldError(field=None, code=code, message=message)]
    try:
        record = model.model_validate(row.values)
    except ValidationError as error:
        return field_errors(error)
    return record.event(secret)


def ingest_files(
    source: str,
    paths: Sequence[Path],
    secret: Secret,
    on_event: EventSink,
    on_dead_letter: DeadLetterSink,
    *,
    encoding: str | None = None,
    progress: bool | None = None,
) -> IngestSummary:
    """Read every file of one source; every record read becomes exactly one event or one dead letter.

    All files are opened (and their headers checked) before any record is processed, so a file that
    cannot be read stops the run before anything is written.
    """
    model = record_type(source)
    opened: list[RowFile] = [
        open_rows(path, model.header_names(), model.required_columns(), encoding) for path in paths
    ]
    summary = IngestSummary(source, [])
    for row_file in opened:
        counts = FileCounts(str(row_file.path), ignored_columns=row_file.ignored_columns)
        summary.files.append(counts)
        unit = "rows" if row_file.format == "xlsx" else "B"
        with tqdm(
            total=row_file.size,
            unit=unit,
            unit_scale=True,
            desc=f"{source} {row_file.path.name}",
            disable=None if progress is None else not progress,
            leave=False,
        ) as bar:
            last = 0
            for row in row_file.rows:
                counts.read += 1
                outcome = convert_row(model, row, secret)
                if isinstance(outcome, list):
                    counts.rejected += 1
                    where = str(row_file.path)
                    letter = record_dead_letter(
                        source, f"{where}:{row.line}", row.values, outcome, file=where, line=row.line
                    )
                    on_dead_letter(letter)
                else:
                    counts.accepted += 1
                    on_event(outcome)
                if counts.read % 2048 == 0:
                    position = row_file.position()
                    bar.update(position - last)
                    last = position
        counts.blank_lines = row_file.blank_lines
    return summary
