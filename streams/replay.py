"""Offline replay (SPEC section 7): event files in, alert records out, through the same engine.

Two kinds of input:
- connector outputs (no ticks): merged in a stable order -- version time (``recorded_at``, else
  ``occurred_at``), then event type (hardship, roster, registration, payment), then ``event_id`` --
  that depends on the events alone, never on how the files are named, listed, ordered or formatted;
  ticks are inserted at 00:00 China Standard Time after each policy checkpoint (before events at or
  after their time) and at ``--until``. Large inputs are sorted externally in bounded memory.
- an archived log (an archive's segments, known by their header, or any input that contains ticks):
  replayed in the order given, one engine per partition, as the live workers saw it.
"""

from __future__ import annotations

import contextlib
import heapq
import multiprocessing
import os
import queue as queue_module
import re
import signal
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import orjson
from pydantic import ValidationError
from tqdm import tqdm

from infra.errors import InputError, first_problem
from schemas.codec import (
    container_holds,
    container_metadata,
    event_from_json,
    read_event_container,
    read_events_of,
    to_json_line,
)
from schemas.models import AlertRecord, ClockTick, CoverageRecord, LogEvent, SourceEvent
from schemas.times import parse_instant
from streams.core.clock import make_tick
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import PolicyBook

# Order of event types at the same instant: the tick first (SPEC: a checkpoint tick sorts before
# events at or after its time), then hardship, roster, registration, payment.
TYPE_RANK = {"ClockTick": 0, "HardshipStatusChange": 1, "RosterChange": 2, "RegistrationChange": 3, "PaymentChange": 4}
AVRO_MAGIC = b"Obj\x01"
SORT_CHUNK = 500_000


def read_events(path: Path) -> Iterator[tuple[int, LogEvent]]:
    """(line or record number, event) of an events file: canonical JSON Lines or an Avro container."""
    return cast(Iterator[tuple[int, LogEvent]], _read(path, None))


def _read(path: Path, persons: Callable[[str], bool] | None) -> Iterator[tuple[int, LogEvent | None]]:
    """``read_events``; with ``persons``, the events of an Avro container for persons it says no to
    are not built (None in their place)."""
    try:
        raw = path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    with raw:
        if raw.read(4) == AVRO_MAGIC:
            raw.seek(0)
            number = 0
            try:
                events = read_event_container(raw) if persons is None else read_events_of(raw, persons)
                for number, event in enumerate(events, start=1):
                    yield number, event  # type: ignore[misc]
            except ValidationError as error:  # a record the contract refuses: named as a line is
                raise InputError(f"{path}: record {number + 1}: {first_problem(error)}") from None
            except Exception as error:  # fastavro raises zlib.error, IndexError, ... on damaged blocks too
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                raise InputError(f"{path}: not a readable Avro container of events: {problem}") from None
            return
        raw.seek(0)
        for number, line in enumerate(raw, start=1):
            if line.strip():
                yield number, _event_from_line(path, number, line)


# An agency file given to replay is the likely mistake behind an unreadable first line.
NOT_EVENTS = "replay reads the events `enrollbridge ingest SOURCE FILE --out EVENTS.jsonl` writes, or an archived log"


def _event_from_line(path: Path, number: int, line: bytes) -> LogEvent:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise InputError(f"{path}:{number}: not valid JSON ({error.msg}): {NOT_EVENTS}") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise InputError(f"{path}:{number}: not an event (no type): {NOT_EVENTS}")
    try:
        return event_from_json(obj)  # type: ignore[return-value]
    except ValidationError as error:
        raise InputError(f"{path}:{number}: {first_problem(error)}") from None
    except ValueError as error:
        raise InputError(f"{path}:{number}: field type: {error}") from None


# (version time, type rank, event_id, the line itself, file rank, line number): the first three are
# the merge order; identical event ids are the same record, so the line decides only between copies,
# and the file and line (kept to name a bad line) never decide anything.
SortKey = tuple[int, int, bytes, bytes, int, int]
_EVENT_ID = re.compile(r"[0-9a-f]{32}")


class _ExternalSort:
    """Sorts (key, canonical line) pairs in runs of bounded size spilled to temporary files."""

    def __init__(self, chunk: int = SORT_CHUNK) -> None:
        self.chunk = chunk
        self.buffer: list[tuple[SortKey, bytes]] = []
        self.runs: list[IO[bytes]] = []

    def add(self, key: SortKey, line: bytes) -> None:
        self.buffer.append((key, line))
        if len(self.buffer) >= self.chunk:
            self._spill()

    def _spill(self) -> None:
        self.buffer.sort(key=lambda item: item[0])
        run = tempfile.TemporaryFile(prefix="enrollbridge-sort-")  # noqa: SIM115 -- closed after the merge
        for (version_time, rank, event_id, _, file_rank, number), line in self.buffer:
            run.write(b"%d %d %s %d %d\t" % (version_time, rank, event_id, file_rank, number) + line + b"\n")
        run.seek(0)
        self.runs.append(run)
        self.buffer = []

    def sorted_lines(self) -> Iterator[tuple[SortKey, bytes]]:
        """(key, canonical line) in key order."""
        if not self.runs:
            self.buffer.sort(key=lambda item: item[0])
            yield from self.buffer
            return
        if self.buffer:
            self._spill()
        try:
            yield from heapq.merge(*(map(_run_row, run) for run in self.runs), key=_first)
        finally:
            for run in self.runs:
                run.close()


def _run_row(row: bytes) -> tuple[SortKey, bytes]:
    prefix, line = row.split(b"\t", 1)
    line = line.rstrip(b"\n")
    version_time, rank, event_id, file_rank, number = prefix.split()
    return (int(version_time), int(rank), event_id, line, int(file_rank), int(number)), line


def _first(item: tuple[SortKey, bytes]) -> SortKey:
    return item[0]


@dataclass
class ReplayResult:
    mode: str  # "merged" or "log"
    events: int = 0
    ticks: int = 0
    skipped_after_until: int = 0
    alerts: int = 0
    persons: int = 0
    files: list[str] = field(default_factory=list)
    overflow: int = 0  # events that did not fit their person's state (streams.core.state bounds)
    forgotten: int = 0  # events of coverage years their person's state had forgotten (history_years)
    worker_cpu: float = 0.0  # CPU seconds of the worker processes (``jobs`` > 1), for the benchmark

    def count_overflow(self, _event: SourceEvent) -> None:
        self.overflow += 1

    def count_forgotten(self, _event: SourceEvent) -> None:
        self.forgotten += 1


class MergedLog:
    """Connector outputs read once and sorted into the stable merge order; ``stream`` adds the ticks.

    Reading also finds out whether the inputs are an archived log instead (they contain ticks).
    With ``share`` (index, jobs), only the events of the persons of that share are kept (``replay
    --jobs``); everything is still read, so problems are found and named as without it.
    """

    def __init__(
        self, paths: Sequence[Path], progress: bool | None = None, share: tuple[int, int] | None = None
    ) -> None:
        if not paths:
            raise InputError("no event files given")
        self.files = list(paths)  # their order only names a bad line; the merge order is the events' own
        self.has_ticks = False
        self.first: int | None = None
        self.last: int | None = None
        self.count = 0
        self.skipped_after_until = 0
        self._sorter = _ExternalSort()
        with _bar(sum(os.path.getsize(p) for p in paths), "reading", progress) as bar:
            for file_rank, path in enumerate(self.files):
                done = 0
                for number, type_name, version_time, event_id, person, line in _scan(path):
                    if type_name == "ClockTick":
                        self.has_ticks = True
                        continue
                    if share is not None and share_of(person, share[1]) != share[0]:
                        continue
                    self._sorter.add((version_time, TYPE_RANK[type_name], event_id, line, file_rank, number), line)
                    self.first = version_time if self.first is None else min(self.first, version_time)
                    self.last = version_time if self.last is None else max(self.last, version_time)
                    self.count += 1
                    done += len(line) + 1
                    if number % 4096 == 0:
                        bar.update(done)
                        done = 0
                bar.update(done)

    def tick_times(
        self, policies: PolicyBook, until: int | None, every: int | None = None, since: int | None = None
    ) -> list[int]:
        """Checkpoint ticks (and ``until``); with ``every`` (ms), also a tick at each multiple of it in
        China Standard Time from ``since`` (default: the first event) on -- what a live clock writes."""
        times = set(policies.checkpoint_tick_times())
        start = max(since, self.first or since) if since is not None else self.first
        if every and start is not None:
            end = until if until is not None else (self.last or start) + every
            offset = 8 * 3_600_000  # align to local midnights for daily ticks
            moment = (start + offset) // every * every + every - offset
            while moment <= end:
                times.add(moment)
                moment += every
        if until is not None:
            times = {t for t in times if t <= until} | {until}
        return sorted(times)

    def stream(self, tick_times: list[int], until: int | None = None) -> Iterator[LogEvent]:
        """Events in merge order with ticks inserted before events whose version time is at or after
        theirs; events recorded after ``until`` are left out (and counted)."""
        return (event for _, event in self.keyed_stream(tick_times, until))

    def keyed_stream(self, tick_times: list[int], until: int | None = None) -> Iterator[tuple[Position, LogEvent]]:
        """``stream`` with each item's position in it: (version time, type rank, event_id, line) for an
        event, (time, 0, b"", b"") for a tick. Positions sort as the stream does, so the streams of
        several shares of the persons (``share``) merge back into the stream of all of them."""
        self.skipped_after_until = 0
        self.position: Position = ()
        ticks = iter(tick_times)
        next_tick = next(ticks, None)
        for key, line in self._sorter.sorted_lines():
            version_time = key[0]
            due = next_tick is not None and next_tick <= version_time
            # where a bad line stops the stream: before the ticks it would have let through
            self.position = (next_tick, 0, b"", b"") if due else key[:4]
            event = _event_from_line(self.files[key[4]], key[5], line)
            while next_tick is not None and next_tick <= version_time:
                yield (next_tick, 0, b"", b""), make_tick(next_tick)
                next_tick = next(ticks, None)
            if until is not None and version_time > until:
                self.skipped_after_until += 1
                continue
            yield key[:4], event
        while next_tick is not None:
            yield (next_tick, 0, b"", b""), make_tick(next_tick)
            next_tick = next(ticks, None)


def replay(
    paths: Sequence[Path],
    policies: PolicyBook,
    on_alert: Callable[[AlertRecord], None],
    until: int | None = None,
    progress: bool | None = None,
    on_coverage: Callable[[CoverageRecord], None] | None = None,
    jobs: int = 1,
) -> ReplayResult:
    """Run the rules over the given files and hand every alert record to ``on_alert`` in emission order
    (and, with ``on_coverage``, every change of a roster student's coverage status). With ``jobs`` > 1
    in that many processes, with the same records in the same order (``replay_packed`` sends them
    cheaper than as models)."""
    if jobs > 1:
        pack_coverage = _same if on_coverage is not None else None
        return replay_packed(paths, policies, _same, on_alert, until, progress, pack_coverage, on_coverage, jobs)
    if any(_avro_log(path) for path in paths):  # an archive: skip reading it once to sort what needs no sorting
        return _replay_log(paths, policies, on_alert, until, progress, on_coverage)
    merged = MergedLog(paths, progress)
    if merged.has_ticks:
        return _replay_log(paths, policies, on_alert, until, progress, on_coverage)
    result = ReplayResult("merged", files=[str(f) for f in merged.files])
    store = MemoryStore()
    engine = Engine(policies, store, on_coverage, result.count_overflow, result.count_forgotten)
    with tqdm(unit=" events", desc="replaying", disable=None if progress is None else not progress, leave=False) as bar:
        for event in merged.stream(merged.tick_times(policies, until), until):
            if isinstance(event, ClockTick):
                result.ticks += 1
            else:
                result.events += 1
                if result.events % 4096 == 0:
                    bar.update(4096)
            _run(engine, event, result, on_alert)
    result.skipped_after_until = merged.skipped_after_until
    result.persons = len(store)
    return result


def _avro_log(path: Path) -> bool:
    """Whether ``path`` is an Avro container of the log rather than connector output: a segment of an
    archive (it names its partition), or else a container holding clock ticks. The header is asked
    first: finding the first tick can mean decoding most of the file, a tenth of a replay's time."""
    try:
        header = _segment_header(path)
        if header is None:
            return False
        if PARTITION_METADATA in header:
            return True
        with path.open("rb") as raw:
            return container_holds(raw, "ClockTick")
    except Exception:  # a damaged container (fastavro raises zlib.error, IndexError, ... too)
        return False  # MergedLog reads it again and names the problem


def _bar(total: int, what: str, progress: bool | None) -> tqdm:  # type: ignore[type-arg]
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=what,
        disable=None if progress is None else not progress,
        leave=False,
    )


def _scan(path: Path) -> Iterator[tuple[int, str, int, bytes, str, bytes]]:
    """(line, type, version time, event_id, person_key, line) of each event, read cheaply for sorting
    (a tick's person_key is empty).

    JSON lines are kept as read; they are validated in full when replayed, with their file and line.
    """
    with path.open("rb") as raw:
        is_avro = raw.read(4) == AVRO_MAGIC
    if is_avro:
        for number, event in read_events(path):
            version_time = event.occurred_at if isinstance(event, ClockTick) else event.version_time
            person = "" if isinstance(event, ClockTick) else event.person_key
            yield number, event.schema_name, version_time, event.event_id.encode(), person, to_json_line(event)
        return
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                type_name, event_id = obj["type"], obj["event_id"]
                recorded_at = obj.get("recorded_at")
                version_time = parse_instant(obj["occurred_at"] if recorded_at is None else recorded_at)
                TYPE_RANK[type_name]
                if not _EVENT_ID.fullmatch(event_id):
                    raise ValueError(event_id)
                person = obj.get("person_key") or ""
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                _event_from_line(path, number, line)  # raises the precise error
                raise InputError(
                    f"{path}:{number}: not an event: needs event_id, a known type and occurred_at"
                ) from None
            yield number, type_name, version_time, event_id.encode(), person if isinstance(person, str) else "", line


def _run(engine: Engine, event: LogEvent, result: ReplayResult, on_alert: Callable[[AlertRecord], None]) -> None:
    for alert in engine.process(event):
        result.alerts += 1
        on_alert(alert)


PARTITION_METADATA = "enrollbridge.partition"
FIRST_OFFSET_METADATA = "enrollbridge.first_offset"


def _segment_header(path: Path) -> dict[str, str] | None:
    """The user metadata of an Avro container (None for a file that is not one): what a segment's
    header names. A file that cannot be read, or a damaged header, is named in one line."""
    try:
        with path.open("rb") as raw:
            if raw.read(4) != AVRO_MAGIC:
                return None
            raw.seek(0)
            return container_metadata(raw)
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except Exception as error:  # fastavro raises ValueError, IndexError, ... on a damaged header
        raise InputError(f"{path}: not a readable Avro container of events: {type(error).__name__}") from None


def log_streams(paths: Sequence[Path]) -> list[tuple[int | None, list[Path]]]:
    """The archived log's files grouped by partition (Avro metadata ``enrollbridge.partition``), in
    partition order; within a partition, files by their first offset (``enrollbridge.first_offset``),
    else in the order given. Files without a partition form one stream, in the order given, first."""
    groups: dict[int | None, list[tuple[int, int, Path]]] = {}
    for position, path in enumerate(paths):
        partition: int | None = None
        first_offset = -1
        metadata = _segment_header(path)
        if metadata is not None:
            for name in (PARTITION_METADATA, FIRST_OFFSET_METADATA):
                if not metadata.get(name, "0").isascii() or not metadata.get(name, "0").isdigit():
                    raise InputError(f"{path}: not a log segment: its header's {name} is not a number")
            tagged = metadata.get(PARTITION_METADATA)
            partition = int(tagged) if tagged is not None else None
            first_offset = int(metadata.get(FIRST_OFFSET_METADATA, -1))
        groups.setdefault(partition, []).append((first_offset, position, path))
    ordered = sorted(groups.items(), key=lambda item: -1 if item[0] is None else item[0])
    return [(partition, [path for _, _, path in sorted(files)]) for partition, files in ordered]


def replay_partition(
    files: Sequence[Path],
    policies: PolicyBook,
    on_alert: Callable[[AlertRecord], None],
    until: int | None = None,
    result: ReplayResult | None = None,
    on_file: Callable[[Path], object] | None = None,
    on_coverage: Callable[[CoverageRecord], None] | None = None,
) -> ReplayResult:
    """One partition of an archived log, in the order of ``files``, through a fresh engine -- what the
    worker that owned the partition did. With ``until``, stops at the first tick after it and ticks there."""
    result = result or ReplayResult("log")
    store = MemoryStore()
    engine = Engine(policies, store, on_coverage, result.count_overflow, result.count_forgotten)
    stopped = False
    for path in files:
        for _, event in read_events(path):
            if isinstance(event, ClockTick):
                if until is not None and event.occurred_at > until:
                    stopped = True
                    break
                result.ticks += 1
            else:
                result.events += 1
            _run(engine, event, result, on_alert)
        if on_file is not None:
            on_file(path)
        if stopped:
            break
    if until is not None:
        _run(engine, make_tick(until), result, on_alert)
        result.ticks += 1
    result.persons += len(store)
    return result


def _progressed(bar: tqdm) -> Callable[[Path], object]:  # type: ignore[type-arg]
    return lambda path: bar.update(os.path.getsize(path))


def _replay_log(
    paths: Sequence[Path],
    policies: PolicyBook,
    on_alert: Callable[[AlertRecord], None],
    until: int | None,
    progress: bool | None,
    on_coverage: Callable[[CoverageRecord], None] | None = None,
) -> ReplayResult:
    """The files are a log, kept in its order: one engine per partition, as the workers had."""
    result = ReplayResult("log", files=[str(p) for p in paths])
    total = sum(os.path.getsize(p) for p in paths)
    with _bar(total, "replaying log", progress) as bar:
        for _, files in log_streams(paths):
            replay_partition(files, policies, on_alert, until, result, _progressed(bar), on_coverage)
    return result


# -- every core: ``replay --jobs N`` ----------------------------------------------------------------
#
# The engine works person by person, except on a tick, which evaluates persons in a fixed order: the
# checkpoint sweep in ascending person_key order, then the persons whose payment grace ended, in
# (due time, person_key) order. So the persons are shared out among N worker processes by a hash of
# person_key; each worker reads the whole input (every worker sees every tick, so its clock is the
# one process's clock), replays its persons' events and every tick, and tags each record it emits
# with where one process would have emitted it:
#
#   (position of the cause in the stream, phase, due time, person_key, sequence in this worker)
#
# where the position is the event's or tick's place in the merged stream (its sort key) or in the
# archived log (partition stream, record number); for an event's records phase, due time and
# person_key are (0, 0, ""); for a tick's, (0, 0, person) in the sweep and (1, due, person) after it.
# Every worker emits in ascending tag order, and no two workers share a tag, so heapq.merge of the
# workers' outputs is the one process's output, record for record.
#
# An archive of at least N partitions is shared out by whole partitions instead (partition stream k to
# worker k mod N): each partition has its own engine in one process too, so a worker reads only its
# partitions' files, and the same tags place its records.

Position = tuple[Any, ...]
Tag = tuple[Any, ...]
A = TypeVar("A")
C = TypeVar("C")
_ALERT, _COVERAGE = 0, 1
_BATCH = 512  # records per message from a worker: a message costs about as much as a few records
_NO_PLACE: Tag = (0, 0, "")  # an event's records: its position alone places them
_STOP = 1 << 62  # after every record of a partition stream (the tick at --until)


def share_of(person_key: str, jobs: int) -> int:
    """The worker (0 .. jobs-1) that replays a person: a stable hash of person_key."""
    return zlib.crc32(person_key.encode()) % jobs


def _same(record: Any) -> Any:
    return record


def replay_packed(
    paths: Sequence[Path],
    policies: PolicyBook,
    pack_alert: Callable[[AlertRecord], A],
    on_alert: Callable[[A], object],
    until: int | None = None,
    progress: bool | None = None,
    pack_coverage: Callable[[CoverageRecord], C] | None = None,
    on_coverage: Callable[[C], object] | None = None,
    jobs: int = 1,
) -> ReplayResult:
    """``replay``, handing ``on_alert`` each alert record packed by ``pack_alert`` (and ``on_coverage``
    each coverage record packed by ``pack_coverage``), in one process's order whatever ``jobs``.

    With ``jobs`` > 1 the rules run in that many worker processes, each over a share of the persons
    (or of an archive's partitions), and the packing happens there: give module-level functions (they
    go to the workers by name) that return something cheap to send, such as the record's encoded
    bytes."""
    if (on_coverage is None) != (pack_coverage is None):
        raise ValueError("pack_coverage and on_coverage go together")
    if jobs <= 1:

        def alert(record: AlertRecord) -> None:
            on_alert(pack_alert(record))

        def coverage(record: CoverageRecord) -> None:
            assert on_coverage is not None and pack_coverage is not None
            on_coverage(pack_coverage(record))

        return replay(paths, policies, alert, until, progress, coverage if on_coverage is not None else None)
    return _replay_shares(paths, policies, pack_alert, on_alert, until, progress, pack_coverage, on_coverage, jobs)


class _Worker:
    """One share of the persons (or of an archive's partitions), replayed; records go to ``queue`` in
    batches, tagged."""

    def __init__(
        self,
        queue: Any,
        counters: Any,
        stop: Any,
        index: int,
        jobs: int,
        pack_alert: Callable[[AlertRecord], Any],
        pack_coverage: Callable[[CoverageRecord], Any] | None,
    ) -> None:
        self.queue, self.counters, self.stop, self.index, self.jobs = queue, counters, stop, index, jobs
        self.pack_alert, self.pack_coverage = pack_alert, pack_coverage
        self.batch: list[tuple[Tag, int, Any]] = []
        self.sequence = 0
        self.position: Position = ()

    def holds(self, person_key: str) -> bool:
        return share_of(person_key, self.jobs) == self.index

    def emit(self, tag: Tag, kind: int, packed: Any) -> None:
        self.sequence += 1
        self.batch.append(((*tag, self.sequence), kind, packed))
        if len(self.batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.queue.put(("records", self.batch))
            self.batch = []

    def coverage(self, record: CoverageRecord) -> None:
        assert self.pack_coverage is not None
        self.emit((*self.position, *_NO_PLACE), _COVERAGE, self.pack_coverage(record))

    def engine(self, policies: PolicyBook, result: ReplayResult) -> tuple[Engine, MemoryStore]:
        on_coverage = self.coverage if self.pack_coverage is not None else None
        store = MemoryStore()
        return Engine(policies, store, on_coverage, result.count_overflow, result.count_forgotten), store

    def run(self, engine: Engine, position: Position, event: LogEvent, result: ReplayResult) -> None:
        self.position = position
        if isinstance(event, ClockTick):
            for place, alerts in engine.tick(event):
                for alert in alerts:
                    self.emit((*position, *place), _ALERT, self.pack_alert(alert))
                result.alerts += len(alerts)
        else:
            result.events += 1
            if result.events % 1024 == 0:
                self.counters[self.index] = result.events
                if self.stop.value:
                    raise _Stopped
            alerts = engine.process(event)
            for alert in alerts:
                self.emit((*position, *_NO_PLACE), _ALERT, self.pack_alert(alert))
            result.alerts += len(alerts)

    def merged(self, merged: MergedLog, policies: PolicyBook, until: int | None, result: ReplayResult) -> None:
        engine, store = self.engine(policies, result)
        try:
            for position, event in merged.keyed_stream(merged.tick_times(policies, until), until):
                if isinstance(event, ClockTick):
                    result.ticks += 1
                self.run(engine, position, event, result)
        except InputError:
            self.position = merged.position
            raise
        result.skipped_after_until = merged.skipped_after_until
        result.persons = len(store)

    def log(
        self, paths: Sequence[Path], policies: PolicyBook, until: int | None, by_partition: bool, result: ReplayResult
    ) -> None:
        """``_replay_log`` for one share: every partition stream, with this share's persons -- or, when
        ``by_partition`` (``_shares_by_partition``), this share's partition streams, with all their persons."""
        jobs = self.jobs
        for stream, (_, files) in enumerate(log_streams(paths)):
            if by_partition and stream % jobs != self.index:
                continue
            engine, store = self.engine(policies, result)
            number, stopped = 0, False
            for path in files:
                self.position = (stream, number + 1)  # where a file that cannot be read stops the replay
                for _, event in _read(path, None if by_partition else self.holds):
                    number += 1
                    if event is None:
                        continue  # another share's person (not even built)
                    if isinstance(event, ClockTick):
                        if until is not None and event.occurred_at > until:
                            stopped = True
                            break
                        result.ticks += 1
                    elif not by_partition and share_of(event.person_key, jobs) != self.index:
                        continue
                    self.run(engine, (stream, number), event, result)
                    self.position = (stream, number + 1)
                if stopped:
                    break
            if until is not None:
                self.run(engine, (stream, _STOP), make_tick(until), result)
                result.ticks += 1
            result.persons += len(store)


def _shares_by_partition(paths: Sequence[Path], jobs: int) -> bool:
    """Whether ``replay --jobs`` shares out whole partition streams instead of persons: the inputs are
    an archive's segments of at least ``jobs`` partitions. A partition's engine is independent of the
    others' (as each worker's was live), so a share then reads only its own partitions' files; shared
    by persons, every share decodes every record of the log."""
    try:
        streams = log_streams(paths)
    except (InputError, OSError):
        return False  # the shares meet the problem where one process would, and report it
    return len(streams) >= jobs and all(partition is not None for partition, _ in streams)


def _share_main(
    paths: Sequence[Path],
    policies: PolicyBook,
    until: int | None,
    index: int,
    jobs: int,
    by_partition: bool,
    pack_alert: Callable[[AlertRecord], Any],
    pack_coverage: Callable[[CoverageRecord], Any] | None,
    queue: Any,
    counters: Any,
    stop: Any,
) -> None:
    """A worker process: what ``replay`` does, for the persons (or, ``by_partition``, the partition
    streams) of share ``index``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    worker = _Worker(queue, counters, stop, index, jobs, pack_alert, pack_coverage)
    try:
        if any(_avro_log(path) for path in paths):
            result = ReplayResult("log", files=[str(p) for p in paths])
            worker.log(paths, policies, until, by_partition, result)
        else:
            merged = MergedLog(paths, False, (index, jobs))
            if merged.has_ticks:
                result = ReplayResult("log", files=[str(p) for p in paths])
                worker.log(paths, policies, until, by_partition, result)
            else:
                result = ReplayResult("merged", files=[str(f) for f in merged.files])
                worker.merged(merged, policies, until, result)
        worker.flush()
        counters[index] = result.events
        result.worker_cpu = time.process_time()
        queue.put(("done", result))
    except _Stopped:  # the parent has stopped reading: leave what is unsent
        queue.cancel_join_thread()
    except Exception as error:  # handed to the parent, which raises it where one process would have
        worker.flush()
        queue.put(("failed", worker.position, error))


class _Stopped(Exception):
    """The parent asked the workers to stop (an error elsewhere, or Ctrl-C)."""


def _replay_shares(
    paths: Sequence[Path],
    policies: PolicyBook,
    pack_alert: Callable[[AlertRecord], A],
    on_alert: Callable[[A], object],
    until: int | None,
    progress: bool | None,
    pack_coverage: Callable[[CoverageRecord], C] | None,
    on_coverage: Callable[[C], object] | None,
    jobs: int,
) -> ReplayResult:
    # Fork, which starts at once, only while this process has no other thread (the command line: the
    # workers start before the progress bar's monitor thread); a forked child of a process with threads
    # could inherit a lock one of them held (Python 3.12 on warns). Else a fork server (a fresh process
    # that imports this module once and forks the workers), else a fresh interpreter per worker.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        context: Any = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context("spawn")
    by_partition = _shares_by_partition(paths, jobs)  # decided once, for every worker and the result
    counters = context.RawArray("q", jobs)
    stop = context.RawValue("b", 0)
    queues = [context.Queue() for _ in range(jobs)]
    common = (list(paths), policies, until)
    workers = [
        context.Process(
            target=_share_main,
            args=(*common, index, jobs, by_partition, pack_alert, pack_coverage, queues[index], counters, stop),
            name=f"enrollbridge-replay-{index}",
            daemon=True,
        )
        for index in range(jobs)
    ]
    results: list[ReplayResult | None] = [None] * jobs
    bar: tqdm | None = None  # type: ignore[type-arg]

    def refresh() -> None:
        if bar is not None:
            bar.update(sum(counters) - bar.n)

    def receive(index: int) -> Any:
        while True:
            try:
                return queues[index].get(timeout=0.25)
            except queue_module.Empty:
                refresh()
                if not workers[index].is_alive():  # its last words may still be in the pipe
                    try:
                        return queues[index].get(timeout=1)
                    except queue_module.Empty:
                        code = workers[index].exitcode
                        raise RuntimeError(f"replay worker {index} ended without a result (exit code {code})") from None

    def records(index: int) -> Iterator[tuple[Tag, int, Any]]:
        while True:
            message = receive(index)
            if message[0] == "records":
                yield from message[1]
            elif message[0] == "failed":
                yield message[1], _FAILED, message[2]
                return
            else:
                results[index] = message[1]
                return

    try:
        for worker in workers:
            worker.start()
        bar = tqdm(
            unit=" events",
            desc=f"replaying ({jobs} processes)",
            disable=None if progress is None else not progress,
            leave=False,
        )
        for _, kind, packed in heapq.merge(*map(records, range(jobs)), key=_first_tag):
            if kind == _ALERT:
                on_alert(packed)
            elif kind == _COVERAGE:
                assert on_coverage is not None
                on_coverage(packed)
            else:
                raise packed
        refresh()
    finally:
        if bar is not None:
            bar.close()
        stop.value = 1  # the workers still running stop at their next thousand events
        deadline = time.monotonic() + 10
        for worker, channel in zip(workers, queues, strict=True):
            if worker.pid is None:
                continue  # never started
            while worker.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue_module.Empty):  # what it sends unread would keep it from exiting
                    channel.get(timeout=0.05)
            if worker.is_alive():
                worker.terminate()
            worker.join()
        for channel in queues:
            channel.close()
            channel.cancel_join_thread()
    return _combined([result for result in results if result is not None], by_partition)


_FAILED = 2


def _first_tag(item: tuple[Tag, int, Any]) -> Tag:
    return item[0]


def _combined(results: list[ReplayResult], by_partition: bool) -> ReplayResult:
    """The one process's result from its shares': the persons and their events are shared out; the
    ticks are every share's, or with whole partitions shared out, each partition's."""
    first = results[0]
    if any(result.mode != first.mode for result in results) or (
        not by_partition and any(result.ticks != first.ticks for result in results)
    ):
        raise RuntimeError("replay --jobs: the shares did not see the same ticks")
    return ReplayResult(
        first.mode,
        events=sum(r.events for r in results),
        ticks=sum(r.ticks for r in results) if by_partition else first.ticks,
        skipped_after_until=sum(r.skipped_after_until for r in results),
        alerts=sum(r.alerts for r in results),
        persons=sum(r.persons for r in results),
        files=first.files,
        overflow=sum(r.overflow for r in results),
        forgotten=sum(r.forgotten for r in results),
        worker_cpu=sum(r.worker_cpu for r in results),
    )
