"""File source connector: agency files in, events and dead letters out, every record accounted for.

A file whose records are rejected ``REJECTED_IN_A_ROW`` times in a row is not what it claims to be
(garbage bytes, another agency's export, a quote never closed) or was exported wrongly as a whole:
it is refused with one error instead of turning into as many dead letters as it has lines.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from connectors.deadletter import field_errors, record_dead_letter
from connectors.identity import Secret
from connectors.readers import Row, RowFile, open_rows
from connectors.records import RECORD_TYPES, SourceRecord
from infra.errors import InputError
from schemas.codec import JsonLinesWriter, event_from_values, event_values
from schemas.models import DeadLetter, FieldError, SourceEvent

EventSink = Callable[[SourceEvent], None]
DeadLetterSink = Callable[[DeadLetter], None]
REJECTED_IN_A_ROW = 1000


@dataclass
class FileCounts:
    """What one file gave: read = accepted + rejected always holds."""

    path: str
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    blank_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    more_ignored: bool = False


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


class OutputFiles:
    """Events and dead letters as JSON Lines, each written aside (``.NAME.partial`` in the same
    folder) and renamed into place only when the run succeeded: a run that fails part-way leaves
    no output behind, not even an empty file, and never half of one."""

    def __init__(self, events: Path, dead_letters: Path) -> None:
        self.paths = (events, dead_letters)
        self.partials = tuple(path.with_name(f".{path.name}.partial") for path in self.paths)
        self._writers: list[JsonLinesWriter] = []

    def __enter__(self) -> tuple[EventSink, DeadLetterSink]:
        try:
            for partial in self.partials:
                self._writers.append(JsonLinesWriter(partial))
        except OSError as error:
            self._discard()
            raise InputError(f"cannot write {error.filename}: {error.strerror or error}") from None
        events, dead_letters = self._writers
        return events.write, dead_letters.write

    def __exit__(
        self, kind: type[BaseException] | None, _error: BaseException | None, _trace: TracebackType | None
    ) -> None:
        if kind is not None:
            self._discard()
            return
        for writer in self._writers:
            writer.close()
        for partial, path in zip(self.partials, self.paths, strict=True):
            partial.replace(path)

    def _discard(self) -> None:
        for writer in self._writers:
            writer.close()
        for partial in self.partials:
            partial.unlink(missing_ok=True)


def record_type(source: str) -> type[SourceRecord]:
    try:
        return RECORD_TYPES[source]
    except KeyError:
        raise InputError(f"unknown source {source!r}; expected one of {', '.join(RECORD_TYPES)}") from None


def convert_row(model: type[SourceRecord], row: Row, secret: Secret) -> SourceEvent | list[FieldError]:
    """One row to its event, or to the list of what is wrong with it; whatever the row holds."""
    if row.problem is not None:
        code, message = row.problem
        return [FieldError(field=None, code=code, message=message)]
    event = model.fast_event(row.values, secret)
    if event is not None:
        return event
    try:
        # The model path, for a row the fast path gave up on: it names every failure. The event's
        # own model checks again what the record promised.
        return model.model_validate(row.values).event(secret)
    except ValidationError as error:
        return field_errors(error, row.labels)


# -- converting rows in other processes ------------------------------------------------------------
#
# With ``jobs`` > 1 this process reads the rows (in order, as ever) and hands them in chunks to
# worker processes, which convert them; the outcomes come back in the order the chunks went out, so
# everything after the conversion (counting, dead letters, the refusal of a file, the sinks) sees
# exactly what one process would. Events travel as their field values (``event_values``).

CHUNK_ROWS = 2000  # rows per task: a task's overhead is well under 1 % of its work
_Outcome = tuple[Any, ...] | list[FieldError]
_worker: tuple[type[SourceRecord], Secret] | None = None


def _start_worker(source: str, secret: Secret) -> None:
    global _worker
    _worker = (record_type(source), secret)


_Work = tuple[Mapping[str, object], tuple[str, str] | None, Mapping[str, str] | None]  # values, problem, labels


def _convert_chunk(rows: list[_Work]) -> list[_Outcome]:
    assert _worker is not None
    model, secret = _worker
    outcomes: list[_Outcome] = []
    for values, problem, labels in rows:
        outcome = convert_row(model, Row(0, values, problem, labels or {}), secret)
        outcomes.append(outcome if isinstance(outcome, list) else event_values(outcome))
    return outcomes


class Conversion:
    """Rows to outcomes (an event, or what is wrong with the row), in order, in this process or in
    ``jobs`` worker processes."""

    def __init__(self, model: type[SourceRecord], secret: Secret, jobs: int) -> None:
        self.model = model
        self.secret = secret
        self.pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            # Forked workers start at once (a fork server or a fresh interpreter costs a few tenths of
            # a second). They only convert rows: no logging, no Kafka client, nothing that could wait
            # on a lock another thread of this process held when it forked.
            fork = "fork" in multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if fork else None)
            self.pool = ProcessPoolExecutor(jobs, context, _start_worker, (model.source, secret))
            self.window = 2 * jobs

    def __enter__(self) -> Conversion:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def __call__(self, rows: Iterator[Row]) -> Iterator[tuple[Row, SourceEvent | list[FieldError]]]:
        if self.pool is None:
            for row in rows:
                yield row, convert_row(self.model, row, self.secret)
            return
        pending: deque[tuple[list[Row], Future[list[_Outcome]]]] = deque()
        failure: InputError | None = None
        more = True
        event_type = self.model.event_type
        while True:
            while more and len(pending) < self.window:
                chunk: list[Row] = []
                try:
                    chunk.extend(itertools.islice(rows, CHUNK_ROWS))
                except InputError as error:  # unreadable from here on: the rows before it still come first
                    failure, more = error, False
                more = more and len(chunk) == CHUNK_ROWS
                if chunk:
                    # Each row's own labels: a JSON record names its columns its own way. A file's
                    # rows share one dict, which pickling sends once.
                    work: list[_Work] = [(row.values, row.problem, row.labels or None) for row in chunk]
                    pending.append((chunk, self.pool.submit(_convert_chunk, work)))
            if not pending:
                break
            chunk, future = pending.popleft()
            for row, outcome in zip(chunk, future.result(), strict=True):
                yield row, (outcome if isinstance(outcome, list) else event_from_values(event_type, outcome))
        if failure is not None:
            raise failure


def ingest_files(
    source: str,
    paths: Sequence[Path],
    secret: Secret,
    on_event: EventSink,
    on_dead_letter: DeadLetterSink,
    *,
    encoding: str | None = None,
    progress: bool | None = None,
    jobs: int = 1,
) -> IngestSummary:
    """Read every file of one source; every record read becomes exactly one event or one dead letter.

    All files are opened (and their headers checked) before any record is processed. A file that
    turns out unreadable further on (a byte that is not in its encoding, ``REJECTED_IN_A_ROW``
    rejected records in a row) raises ``InputError`` part-way: callers write what they were given
    aside and keep it only when this returns (``ingest`` does). With ``jobs`` > 1 the records are
    converted in that many processes; what the sinks receive, and in which order, does not change.
    """
    model = record_type(source)
    opened: list[RowFile] = [
        open_rows(path, model.header_names(), model.required_columns(), encoding) for path in paths
    ]
    summary = IngestSummary(source, [])
    with Conversion(model, secret, jobs) as conversion:
        for row_file in opened:
            summary.files.append(_ingest_file(source, row_file, conversion, on_event, on_dead_letter, progress))
    return summary


def _ingest_file(
    source: str,
    row_file: RowFile,
    conversion: Conversion,
    on_event: EventSink,
    on_dead_letter: DeadLetterSink,
    progress: bool | None,
) -> FileCounts:
    """One opened file's records to the sinks, in order; what it gave."""
    counts = FileCounts(str(row_file.path))
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
        in_a_row = 0
        where = str(row_file.path)
        for row, outcome in conversion(row_file.rows):
            counts.read += 1
            if isinstance(outcome, list):
                counts.rejected += 1
                lines = f"{row.line}-{row.end_line}" if row.end_line else str(row.line)
                letter = record_dead_letter(source, f"{where}:{lines}", row.values, outcome, file=where, line=row.line)
                in_a_row += 1
                if in_a_row == REJECTED_IN_A_ROW:
                    raise InputError(
                        f"{where}:{row.line}: refused after {counts.read:,} records read, the last "
                        f"{in_a_row:,} all rejected (this one: {letter.error_code} {letter.errors[0].message}); "
                        f"check that this is a {source} file and how it was exported"
                    )
                on_dead_letter(letter)
            else:
                in_a_row = 0
                counts.accepted += 1
                on_event(outcome)
            if counts.read % 2048 == 0:
                position = row_file.position()
                bar.update(position - last)
                last = position
    counts.blank_lines = row_file.blank_lines
    counts.ignored_columns, counts.more_ignored = row_file.ignored_columns, row_file.more_ignored
    return counts
