"""Offline replay (SPEC section 7): event files in, alert records out, through the same engine.

Two kinds of input:
- connector outputs (no ticks): merged in a stable order -- version time (``recorded_at``, else
  ``occurred_at``), then event type (hardship, roster, registration, payment), then ``event_id`` --
  that depends on the events alone, never on how the files are named, listed, ordered or formatted;
  ticks are inserted at 00:00 China Standard Time after each policy checkpoint (before events at or
  after their time) and at ``--until``. Large inputs are sorted externally in bounded memory.
- an archived log (the input contains ticks): replayed in the order given, as the live worker saw it.
"""

from __future__ import annotations

import heapq
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from pydantic import ValidationError
from tqdm import tqdm

from infra.errors import InputError
from schemas.codec import container_holds, container_metadata, event_from_json, read_event_container, to_json_line
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
    try:
        raw = path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    with raw:
        if raw.read(4) == AVRO_MAGIC:
            raw.seek(0)
            try:
                for number, event in enumerate(read_event_container(raw), start=1):
                    yield number, event  # type: ignore[misc]
            except (ValueError, EOFError) as error:
                raise InputError(f"{path}: not a readable Avro container of events: {error}") from None
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
        detail = error.errors(include_url=False, include_input=False)[0]
        field_name = ".".join(str(part) for part in detail["loc"]) or "record"
        raise InputError(f"{path}:{number}: field {field_name}: {detail['msg']}") from None
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

    def sorted_lines(self) -> Iterator[tuple[int, int, bytes]]:
        """(file rank, line, canonical line) in key order."""
        if not self.runs:
            self.buffer.sort(key=lambda item: item[0])
            for key, line in self.buffer:
                yield key[4], key[5], line
            return
        if self.buffer:
            self._spill()
        try:
            for row in heapq.merge(*self.runs, key=_run_key):
                prefix, line = row.split(b"\t", 1)
                _, _, _, file_rank, number = prefix.split()
                yield int(file_rank), int(number), line.rstrip(b"\n")
        finally:
            for run in self.runs:
                run.close()


def _run_key(row: bytes) -> SortKey:
    prefix, line = row.split(b"\t", 1)
    version_time, rank, event_id, file_rank, number = prefix.split()
    return int(version_time), int(rank), event_id, line, int(file_rank), int(number)


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

    def count_overflow(self, _event: SourceEvent) -> None:
        self.overflow += 1

    def count_forgotten(self, _event: SourceEvent) -> None:
        self.forgotten += 1


class MergedLog:
    """Connector outputs read once and sorted into the stable merge order; ``stream`` adds the ticks.

    Reading also finds out whether the inputs are an archived log instead (they contain ticks).
    """

    def __init__(self, paths: Sequence[Path], progress: bool | None = None) -> None:
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
                for number, type_name, version_time, event_id, line in _scan(path):
                    if type_name == "ClockTick":
                        self.has_ticks = True
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
        self.skipped_after_until = 0
        ticks = iter(tick_times)
        next_tick = next(ticks, None)
        for file_rank, number, line in self._sorter.sorted_lines():
            event = _event_from_line(self.files[file_rank], number, line)
            version_time = event.occurred_at if isinstance(event, ClockTick) else event.version_time
            while next_tick is not None and next_tick <= version_time:
                yield make_tick(next_tick)
                next_tick = next(ticks, None)
            if until is not None and version_time > until:
                self.skipped_after_until += 1
                continue
            yield event
        while next_tick is not None:
            yield make_tick(next_tick)
            next_tick = next(ticks, None)


def replay(
    paths: Sequence[Path],
    policies: PolicyBook,
    on_alert: Callable[[AlertRecord], None],
    until: int | None = None,
    progress: bool | None = None,
    on_coverage: Callable[[CoverageRecord], None] | None = None,
) -> ReplayResult:
    """Run the rules over the given files and hand every alert record to ``on_alert`` in emission order
    (and, with ``on_coverage``, every change of a roster student's coverage status)."""
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
    """Whether ``path`` is an Avro container holding clock ticks, i.e. a log rather than connector output."""
    try:
        with path.open("rb") as raw:
            if raw.read(4) != AVRO_MAGIC:
                return False
            raw.seek(0)
            return container_holds(raw, "ClockTick")
    except (OSError, ValueError, EOFError):
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


def _scan(path: Path) -> Iterator[tuple[int, str, int, bytes, bytes]]:
    """(line, type, version time, event_id, line) of each event, read cheaply for sorting.

    JSON lines are kept as read; they are validated in full when replayed, with their file and line.
    """
    with path.open("rb") as raw:
        is_avro = raw.read(4) == AVRO_MAGIC
    if is_avro:
        for number, event in read_events(path):
            version_time = event.occurred_at if isinstance(event, ClockTick) else event.version_time
            yield number, event.schema_name, version_time, event.event_id.encode(), to_json_line(event)
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
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                _event_from_line(path, number, line)  # raises the precise error
                raise InputError(
                    f"{path}:{number}: not an event: needs event_id, a known type and occurred_at"
                ) from None
            yield number, type_name, version_time, event_id.encode(), line


def _run(engine: Engine, event: LogEvent, result: ReplayResult, on_alert: Callable[[AlertRecord], None]) -> None:
    for alert in engine.process(event):
        result.alerts += 1
        on_alert(alert)


PARTITION_METADATA = "enrollbridge.partition"
FIRST_OFFSET_METADATA = "enrollbridge.first_offset"


def _log_streams(paths: Sequence[Path]) -> list[tuple[int | None, list[Path]]]:
    """The archived log's files grouped by partition (Avro metadata ``enrollbridge.partition``), in
    partition order; within a partition, files by their first offset (``enrollbridge.first_offset``),
    else in the order given. Files without a partition form one stream, in the order given, first."""
    groups: dict[int | None, list[tuple[int, int, Path]]] = {}
    for position, path in enumerate(paths):
        partition: int | None = None
        first_offset = -1
        with path.open("rb") as raw:
            if raw.read(4) == AVRO_MAGIC:
                raw.seek(0)
                metadata = container_metadata(raw)
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
        for _, files in _log_streams(paths):
            replay_partition(files, policies, on_alert, until, result, _progressed(bar), on_coverage)
    return result
