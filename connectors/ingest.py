"""File source connector: agency files in, events and dead letters out, every record accounted for.

A file whose records are rejected ``REJECTED_IN_A_ROW`` times in a row is not what it claims to be
(garbage bytes, another agency's export, a quote never closed) or was exported wrongly as a whole:
it is refused with one error instead of turning into as many dead letters as it has lines.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from connectors.deadletter import field_errors, record_dead_letter
from connectors.identity import Secret
from connectors.readers import CsvLayout, Piece, Row, RowFile, open_rows, split_lines
from connectors.records import RECORD_TYPES, SourceRecord
from infra.errors import InputError
from schemas.codec import event_from_values, event_values, to_json_line
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


def record_type(source: str) -> type[SourceRecord]:
    try:
        return RECORD_TYPES[source]
    except KeyError:
        raise InputError(f"unknown source {source!r}; expected one of {', '.join(RECORD_TYPES)}") from None


def convert_row(model: type[SourceRecord], row: Row, secret: Secret) -> SourceEvent | list[FieldError]:
    """One row to its event, or to the list of what is wrong with it; whatever the row holds."""
    outcome = _convert(model, row, secret, lines=False)
    assert not isinstance(outcome, bytes)
    return outcome


def _convert(
    model: type[SourceRecord], row: Row, secret: Secret, *, lines: bool
) -> SourceEvent | bytes | list[FieldError]:
    """``convert_row``; with ``lines``, the event as its canonical JSON line (with its newline) only."""
    if row.problem is not None:
        code, message = row.problem
        return [FieldError(field=None, code=code, message=message)]
    made = model.fast_line(row.values, secret) if lines else model.fast_event(row.values, secret)
    if made is not None:
        return made
    try:
        # The model path, for a row the fast path gave up on: it names every failure. The event's
        # own model checks again what the record promised.
        event = model.model_validate(row.values).event(secret)
    except ValidationError as error:
        return field_errors(error, row.labels)
    return to_json_line(event) + b"\n" if lines else event


# -- converting rows, here or in other processes ---------------------------------------------------
#
# Rows are converted in batches, each a run of one file's rows in order. With ``jobs`` > 1 worker
# processes convert them: a CSV file's workers each read their own run of its lines (this process
# only finds where runs of about ``PIECE_BYTES`` begin, counting newlines), other files' rows are
# read here and handed over ``CHUNK_ROWS`` at a time. Batches are taken in file order, so counting,
# the refusal of a file, dead letters and what the sinks receive are exactly what one process gives.
# A batch carries its events as their canonical JSON lines when the output is JSON Lines (this
# process then only appends bytes), else as events (from a worker: their field values).

CHUNK_ROWS = 2000  # rows per task: a task's overhead is well under 1 % of its work
PIECE_BYTES = 1 << 20  # bytes of a CSV file per task: about 7,000 rows


@dataclass
class Batch:
    """What a run of one file's rows became. Row ``index`` (0-based, in the run) is rejected when
    listed in ``rejected``; the others are the events, in order."""

    read: int = 0
    events: list[Any] = field(default_factory=list)  # events, or their values, or nothing (lines)
    lines: list[bytes] = field(default_factory=list)  # the events' canonical JSON lines, when asked
    rejected: list[tuple[int, int, DeadLetter]] = field(default_factory=list)  # index, line, letter
    failure: str | None = None  # the file could not be read past this run
    position: int = 0  # progress through the file after this run (bytes, or rows for XLSX)
    blank_lines: int = 0


@dataclass(frozen=True)
class _Task:
    """What converting needs besides the rows: picklable, so the same in a worker."""

    model: type[SourceRecord]
    secret: Secret
    lines: bool  # events as canonical JSON lines (else as events)
    values: bool  # events as their field values (to cross to another process)


def _convert_rows(task: _Task, where: str, rows: Iterable[Row]) -> Batch:
    batch = Batch()
    for index, row in enumerate(rows):
        outcome = _convert(task.model, row, task.secret, lines=task.lines)
        if isinstance(outcome, list):
            ends = f"{row.line}-{row.end_line}" if row.end_line else str(row.line)
            letter = record_dead_letter(
                task.model.source, f"{where}:{ends}", row.values, outcome, file=where, line=row.line
            )
            batch.rejected.append((index, row.line, letter))
        elif isinstance(outcome, bytes):
            batch.lines.append(outcome)
        else:
            batch.events.append(event_values(outcome) if task.values else outcome)
        batch.read = index + 1
    return batch


_worker: _Task | None = None


def _start_worker(task: _Task) -> None:
    global _worker
    _worker = task


_Work = tuple[int, Mapping[str, object], tuple[str, str] | None, Mapping[str, str] | None, int | None]


def _convert_chunk(where: str, work: list[_Work]) -> Batch:
    """In a worker: rows read by the parent."""
    assert _worker is not None
    rows = [Row(line, values, problem, labels or {}, end) for line, values, problem, labels, end in work]
    return _convert_rows(_worker, where, rows)


def _convert_piece(layout: CsvLayout, where: str, offset: int, first_line: int, lines: int) -> tuple[Piece, Batch]:
    """In a worker (or here, after a record ran over a piece's end): a run of a CSV file's lines."""
    assert _worker is not None
    return _read_piece(_worker, layout, where, offset, first_line, lines)


def _read_piece(
    task: _Task, layout: CsvLayout, where: str, offset: int, first_line: int, lines: int
) -> tuple[Piece, Batch]:
    piece = layout.piece(offset, first_line, lines)
    batch = _convert_rows(task, where, piece.rows)
    batch.failure, batch.position, batch.blank_lines = piece.failure, piece.end_offset, piece.blank_lines
    piece.rows = []  # converted: not sent back
    return piece, batch


class Conversion:
    """Rows to batches of outcomes, in order, in this process or in ``jobs`` worker processes."""

    def __init__(self, model: type[SourceRecord], secret: Secret, jobs: int, *, lines: bool) -> None:
        self.task = _Task(model, secret, lines, values=False)
        self.pool: ProcessPoolExecutor | None = None
        self.window = 2 * jobs
        if jobs > 1:
            method = _start_method()
            context = multiprocessing.get_context(method)
            if method == "forkserver":  # the server imports the connectors once; each worker forks from it
                context.set_forkserver_preload(["__main__", __name__])
            self.pool = ProcessPoolExecutor(jobs, context, _start_worker, (_Task(model, secret, lines, values=True),))

    def __enter__(self) -> Conversion:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def batches(self, row_file: RowFile) -> Iterator[Batch]:
        where = str(row_file.path)
        if self.pool is not None and row_file.layout is not None and row_file.body is not None:
            row_file.close()  # its workers read it
            yield from self._pieces(self.pool, row_file.layout, where, row_file.body)
            return
        for chunk, failure in _chunks(row_file.rows):
            if self.pool is None:
                batch = _convert_rows(self.task, where, chunk)
                batch.position = row_file.position()
                batch.failure = failure
                yield batch
            else:
                yield from self._chunks_elsewhere(self.pool, row_file, where, chunk, failure)
                return

    def _chunks_elsewhere(
        self, pool: ProcessPoolExecutor, row_file: RowFile, where: str, first: list[Row], failure: str | None
    ) -> Iterator[Batch]:
        """Rows read here, converted in the workers: XLSX and JSON Lines files."""
        pending: deque[tuple[Future[Batch], int, str | None]] = deque()
        chunks = itertools.chain([(first, failure)], _chunks(row_file.rows) if failure is None else ())
        for chunk, failed in itertools.chain(chunks, [([], None)]):
            if chunk:
                # Each row's own labels: a JSON record names its columns its own way. A file's rows
                # share one dict, which pickling sends once.
                work = [(row.line, row.values, row.problem, row.labels or None, row.end_line) for row in chunk]
                pending.append((pool.submit(_convert_chunk, where, work), row_file.position(), failed))
            elif failed is not None:
                pending.append((_done(Batch()), row_file.position(), failed))
            while pending and (len(pending) >= self.window or not chunk):
                future, position, failed_after = pending.popleft()
                batch = self._received(future.result())
                batch.position, batch.failure = position, failed_after
                yield batch

    def _pieces(
        self, pool: ProcessPoolExecutor, layout: CsvLayout, where: str, body: tuple[int, int]
    ) -> Iterator[Batch]:
        """A CSV file read and converted by the workers, a run of lines each. A run is read as if a
        record began at its first line; when the record before ran over into it (a quoted cell
        holding line breaks), it is read again here from where that record ended."""
        offset, line = body
        runs = split_lines(layout.path, offset, line, PIECE_BYTES)
        pending: deque[tuple[Future[tuple[Piece, Batch]], int, int, int]] = deque()
        more = True
        while True:
            while more and len(pending) < self.window:
                run = next(runs, None)
                if run is None:
                    more = False
                else:
                    pending.append((pool.submit(_convert_piece, layout, where, *run), *run))
            if not pending:
                return
            future, start, first_line, lines = pending.popleft()
            if start != offset:  # a record began before this run and ended inside or after it
                future.cancel()
                if first_line + lines <= line:
                    continue  # wholly read with that record
                piece, batch = _read_piece(self.task, layout, where, offset, line, first_line + lines - line)
            else:
                piece, batch = future.result()
                batch = self._received(batch)
            offset, line = piece.end_offset, piece.end_line + 1
            yield batch

    def _received(self, batch: Batch) -> Batch:
        """A worker's batch with its events as events again (when not lines)."""
        if not self.task.lines:
            event_type = self.task.model.event_type
            batch.events = [event_from_values(event_type, values) for values in batch.events]
        return batch


def _start_method() -> str | None:
    """Fork where there is one and this process runs no other thread: the workers start at once.
    Forking a process with threads (a Kafka producer's) can leave a lock held in the child for good,
    and Python 3.12+ warns of it: then a fork server, which starts once per run."""
    methods = multiprocessing.get_all_start_methods()
    _stop_tqdm_monitor()
    if "fork" in methods and _running_threads() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else None


def _running_threads() -> int:
    """This process's threads as the system counts them, as Python's warning on fork does: native
    ones too (a RocksDB's, a Kafka client library's), which ``threading`` does not know of."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc
        return threading.active_count()


def _stop_tqdm_monitor() -> None:
    """Stop the thread that the first ordinary tqdm bar of a process starts and keeps (it only looks
    for bars that stalled; the next ordinary bar starts it again): it alone would keep the workers
    from forking."""
    monitor = tqdm.monitor
    if monitor is not None:
        monitor.exit()  # type: ignore[no-untyped-call]
        tqdm.monitor = None


def _done(batch: Batch) -> Future[Batch]:
    future: Future[Batch] = Future()
    future.set_result(batch)
    return future


def _chunks(rows: Iterator[Row]) -> Iterator[tuple[list[Row], str | None]]:
    """Rows ``CHUNK_ROWS`` at a time, each with the error that stopped reading after it (then the last)."""
    while True:
        chunk: list[Row] = []
        try:
            chunk.extend(itertools.islice(rows, CHUNK_ROWS))
        except InputError as error:  # unreadable from here on: the rows before it still come first
            yield chunk, str(error)
            return
        if not chunk:
            return
        yield chunk, None
        if len(chunk) < CHUNK_ROWS:
            return


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
    return _ingest(source, paths, secret, _ToSinks(on_event, on_dead_letter), encoding, progress, jobs)


def ingest_lines(
    source: str,
    paths: Sequence[Path],
    secret: Secret,
    events: LineSink,
    dead_letters: LineSink,
    *,
    encoding: str | None = None,
    progress: bool | None = None,
    jobs: int = 1,
) -> IngestSummary:
    """``ingest_files`` with the events and dead letters as their canonical JSON lines (each with its
    newline, several to a call): the bytes ``OutputFiles`` writes. The lines are made where the
    records are converted, so with ``jobs`` > 1 this process only passes bytes on. After an
    ``InputError`` the sinks may hold records of the refused file read before the error."""
    return _ingest(source, paths, secret, _ToLines(events, dead_letters), encoding, progress, jobs)


LineSink = Callable[[bytes], None]


class _ToSinks:
    """Delivers a batch's events and dead letters one by one, in the order of their rows."""

    lines = False

    def __init__(self, on_event: EventSink, on_dead_letter: DeadLetterSink) -> None:
        self.on_event, self.on_dead_letter = on_event, on_dead_letter

    def deliver(self, batch: Batch, rows: int) -> None:
        """The batch's first ``rows`` rows."""
        events = iter(batch.events)
        done = 0
        for index, _line, letter in batch.rejected:
            if index >= rows:
                break
            for event in itertools.islice(events, index - done):
                self.on_event(event)
            self.on_dead_letter(letter)
            done = index + 1
        for event in itertools.islice(events, rows - done):  # the rows after the last rejected are events
            self.on_event(event)


class _ToLines:
    """Delivers a batch as two runs of bytes: its events' lines and its dead letters' lines."""

    lines = True

    def __init__(self, events: LineSink, dead_letters: LineSink) -> None:
        self.events, self.dead_letters = events, dead_letters

    def deliver(self, batch: Batch, rows: int) -> None:
        if rows < batch.read:
            return  # refused inside the batch: what is written is thrown away
        if batch.lines:
            self.events(b"".join(batch.lines))
        if batch.rejected:
            self.dead_letters(b"".join(to_json_line(letter) + b"\n" for *_, letter in batch.rejected))


def _ingest(
    source: str,
    paths: Sequence[Path],
    secret: Secret,
    delivery: _ToSinks | _ToLines,
    encoding: str | None,
    progress: bool | None,
    jobs: int,
) -> IngestSummary:
    model = record_type(source)
    opened: list[RowFile] = [
        open_rows(path, model.header_names(), model.required_columns(), encoding) for path in paths
    ]
    summary = IngestSummary(source, [])
    try:
        with Conversion(model, secret, jobs, lines=delivery.lines) as conversion:
            for row_file in opened:
                summary.files.append(_ingest_file(source, row_file, conversion, delivery, progress))
    finally:
        for row_file in opened:
            row_file.close()
    return summary


class _Bar(tqdm):  # type: ignore[type-arg]
    """A progress bar without tqdm's monitor thread (started by the first bar, even a disabled one,
    and kept): a process with a thread of its own cannot fork its workers safely."""

    monitor_interval = 0


def _ingest_file(
    source: str, row_file: RowFile, conversion: Conversion, delivery: _ToSinks | _ToLines, progress: bool | None
) -> FileCounts:
    """One opened file's records to the sinks, in order; what it gave."""
    counts = FileCounts(str(row_file.path))
    unit = "rows" if row_file.format == "xlsx" else "B"
    with _Bar(
        total=row_file.size,
        unit=unit,
        unit_scale=True,
        desc=f"{source} {row_file.path.name}",
        disable=None if progress is None else not progress,
        leave=False,
    ) as bar:
        in_a_row = 0
        for batch in conversion.batches(row_file):
            refusal, in_a_row = _refusal(source, str(row_file.path), batch, counts.read, in_a_row)
            delivery.deliver(batch, batch.read if refusal is None else refusal[0])
            if refusal is not None:
                raise refusal[1]
            counts.read += batch.read
            counts.rejected += len(batch.rejected)
            counts.accepted += batch.read - len(batch.rejected)
            row_file.blank_lines += batch.blank_lines
            bar.update(batch.position - bar.n)
            if batch.failure is not None:
                raise InputError(batch.failure)
    counts.blank_lines = row_file.blank_lines
    counts.ignored_columns, counts.more_ignored = row_file.ignored_columns, row_file.more_ignored
    return counts


def _refusal(
    source: str, where: str, batch: Batch, read_before: int, in_a_row: int
) -> tuple[tuple[int, InputError] | None, int]:
    """Whether the file is refused within this batch (the index of the row, and the error), and how
    many records in a row were rejected at its end."""
    previous = -1
    for index, line, letter in batch.rejected:
        in_a_row = in_a_row + 1 if index == previous + 1 else 1
        previous = index
        if in_a_row == REJECTED_IN_A_ROW:
            error = InputError(
                f"{where}:{line}: refused after {read_before + index + 1:,} records read, the last "
                f"{in_a_row:,} all rejected (this one: {letter.error_code} {letter.errors[0].message}); "
                f"check that this is a {source} file and how it was exported"
            )
            return (index, error), in_a_row
    return None, in_a_row if previous == batch.read - 1 else 0
