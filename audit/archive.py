"""``enrollbridge archive``: the unified log and the alerts topic copied from Kafka into Avro
container files, one per partition and offset range, chained in the manifest (``audit.manifest``).

Layout of an archive directory::

    manifest.jsonl                        the hash-chained entries, one per file below
    policy.toml                           the policy the worker applied (archived once)
    events/p0/000000000000-000000004711.avro   unified log, partition 0, offsets 0..4711
    alerts/p0/000000000000-000000000815.avro   alert records of partition 0

Each run appends the records that arrived since the previous run. Segment files carry their topic,
partition and first offset in the Avro header, so ``enrollbridge replay events/*/*.avro`` replays
the log as the workers saw it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from audit.manifest import Entry, append_entry, file_digest, head, read_entries
from infra.errors import InputError
from infra.readback import TopicTail, partition_count, wait_until_processed
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import (
    LOG_EVENT_NAMES,
    UndecodableMessage,
    decode_message,
    write_event_container,
    write_record_container,
)
from schemas.models import AlertRecord, ClockTick, Event, Record, SourceEvent
from streams.replay import FIRST_OFFSET_METADATA, PARTITION_METADATA

TOPIC_METADATA = "enrollbridge.topic"


@dataclass
class ArchiveRun:
    segments: int = 0
    records: dict[str, int] = field(default_factory=lambda: {"events": 0, "alerts": 0})
    head: str = ""
    warnings: list[str] = field(default_factory=list)


def segment_path(archive: Path, stream: str, partition: int, first: int, last: int) -> Path:
    return archive / stream / f"p{partition}" / f"{first:012d}-{last:012d}.avro"


def next_offsets(archive: Path, stream: str) -> dict[int, int]:
    """Per partition, the offset after the last one already archived for ``stream``."""
    offsets: dict[int, int] = {}
    for _, entry in read_entries(archive):
        if entry.stream == stream and entry.partition is not None and entry.last_offset is not None:
            offsets[entry.partition] = entry.last_offset + 1
    return offsets


def archive_policy(archive: Path, policy_file: Path) -> None:
    """Keep the policy the alerts were computed with; an archive holds exactly one."""
    archived = [entry for _, entry in read_entries(archive) if entry.stream == "policy"]
    if not archived:
        target = archive / "policy.toml"
        shutil.copyfile(policy_file, target)
        append_entry(archive, target, "policy", records=1)
        return
    if file_digest(policy_file)[1] != archived[-1].sha256:
        raise InputError(
            f"{policy_file} differs from the policy this archive was started with ({archived[-1].file}); "
            "archive into a new directory"
        )


async def archive_from_kafka(
    settings: Settings, archive: Path, policy_file: Path, wait_seconds: float, progress: bool | None = None
) -> ArchiveRun:
    """Append what arrived on the unified log and the alerts topic since the last run.

    The log is read first; then, if the worker's consumer group has not yet processed all of it,
    we wait up to ``wait_seconds`` for it, so that the alerts read next cover the archived log.
    """
    archive.mkdir(parents=True, exist_ok=True)
    archive_policy(archive, policy_file)
    topics = Topics(settings.topic_prefix)
    run = ArchiveRun()
    ends = await _archive_topic(settings, archive, "events", topics.events, LOG_EVENT_NAMES, run, progress)
    if ends:
        try:
            await wait_until_processed(settings, settings.app_id, ends, topics.events, timeout=wait_seconds)
        except InputError as error:
            run.warnings.append(f"{error}; the alerts archived now may not cover the whole log")
    await _archive_topic(settings, archive, "alerts", topics.alerts, ("AlertRecord",), run, progress)
    run.head = head(archive)
    return run


async def _archive_topic(
    settings: Settings,
    archive: Path,
    stream: str,
    topic: str,
    accepted: tuple[str, ...],
    run: ArchiveRun,
    progress: bool | None,
) -> dict[int, int]:
    partitions = await partition_count(settings, topic)
    if partitions == 0:
        raise InputError(f"topic {topic} does not exist at {settings.bootstrap_servers}")
    start = next_offsets(archive, stream)
    tail = TopicTail(settings, topic, partitions, start=start)
    received: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    await tail.start()
    try:
        with tqdm(unit=" records", desc=f"reading {topic}", disable=None if progress is None else not progress) as bar:
            while batch := await tail.drain():
                for record in batch:
                    received[record.partition].append((record.offset, record.value or b""))
                bar.update(len(batch))
    finally:
        await tail.stop()
    ends: dict[int, int] = {}
    for partition, records in received.items():
        if not records:
            continue
        records.sort()
        expected = start.get(partition, 0)  # an audit needs the log from its very first offset
        for offset, _ in records:
            if offset != expected:
                raise InputError(
                    f"{topic} partition {partition}: offset {offset} where {expected} was expected; "
                    "an audit archive needs every offset from 0 (was the topic compacted, or its start deleted?)"
                )
            expected += 1
        decoded = [_decoded(topic, partition, offset, value, accepted) for offset, value in records]
        write_segment(archive, stream, topic, partition, records[0][0], decoded)
        run.segments += 1
        run.records[stream] += len(records)
        ends[partition] = records[-1][0] + 1
    return ends


def _decoded(topic: str, partition: int, offset: int, value: bytes, accepted: tuple[str, ...]) -> Record:
    try:
        return decode_message(value, accepted)
    except UndecodableMessage as error:
        # The worker writes both topics; a record it cannot have written means the log is not what it was.
        raise InputError(f"{topic} partition {partition} offset {offset}: {error.code}: {error}") from None


def write_segment(
    archive: Path,
    stream: str,
    topic: str,
    partition: int,
    first_offset: int,
    records: Sequence[Record],
    log_schema: Any = None,
) -> Entry:
    """Write one segment (records of consecutive offsets from ``first_offset``) and chain its entry.
    ``log_schema``: write events with this (earlier) version of the log schema instead of the current one."""
    last_offset = first_offset + len(records) - 1
    path = segment_path(archive, stream, partition, first_offset, last_offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {TOPIC_METADATA: topic, PARTITION_METADATA: str(partition), FIRST_OFFSET_METADATA: str(first_offset)}
    partial = path.with_suffix(".partial")
    try:
        with partial.open("wb") as out:
            if stream == "events":
                write_event_container(out, [r for r in records if isinstance(r, Event)], metadata, log_schema)
            else:
                alerts = [r for r in records if isinstance(r, AlertRecord)]
                write_record_container(out, "AlertRecord", alerts, metadata)
    except BaseException:  # a full disk, Ctrl-C: no half-written segment is left, under any name
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)  # a crash never leaves a half-written segment under its final name
    return append_entry(
        archive, path, stream, len(records), topic=topic, partition=partition,
        first_offset=first_offset, last_offset=last_offset,
    )  # fmt: skip


def archive_log_offline(
    archive: Path,
    log: Iterable[Event],
    policy_file: Path,
    partitions: int,
    segments: int = 2,
    log_schema: Any = None,
    adjust_alerts: Callable[[int, list[AlertRecord]], list[AlertRecord]] | None = None,
    progress: bool | None = None,
) -> None:
    """An archive as a fault-free live run would leave it, made without Kafka: the log split into
    partitions as the funnel does (ticks into every partition), ``segments`` segments each, and the
    alerts each partition's engine emits. For benchmarks and tests of ``audit verify``;
    ``adjust_alerts`` lets a test forge the alerts of a partition before they are written."""
    from streams.core.policy import load_policies
    from streams.live.partition_store import partition_of
    from streams.replay import replay_partition

    archive.mkdir(parents=True, exist_ok=True)
    archive_policy(archive, policy_file)
    logs: dict[int, list[Event]] = {p: [] for p in range(partitions)}
    for event in log:
        if isinstance(event, ClockTick):
            for events in logs.values():
                events.append(event)
        else:
            assert isinstance(event, SourceEvent)
            logs[partition_of(event.person_key.encode(), partitions)].append(event)
    policies = load_policies(policy_file)
    for partition in tqdm(sorted(logs), desc="writing archive", disable=None if progress is None else not progress):
        events = logs[partition]
        size = -(-len(events) // segments)
        for first in range(0, len(events), size):
            write_segment(
                archive, "events", "offline.events.v1", partition, first, events[first : first + size], log_schema
            )
        alerts: list[AlertRecord] = []
        replay_partition(sorted((archive / "events" / f"p{partition}").glob("*.avro")), policies, alerts.append)
        if adjust_alerts is not None:
            alerts = adjust_alerts(partition, alerts)
        write_segment(archive, "alerts", "offline.alerts.v1", partition, 0, alerts)


def describe(run: ArchiveRun) -> str:
    lines = [
        f"archived {run.records['events']} log events and {run.records['alerts']} alert records "
        f"in {run.segments} new segments",
        f"head of the manifest chain: {run.head}  (keep it: `audit verify --head` checks against it)",
    ]
    return "\n".join([*(f"warning: {w}" for w in run.warnings), *lines])


def run_archive(settings: Settings, archive: Path, policy_file: Path, wait_seconds: float) -> None:
    run = asyncio.run(archive_from_kafka(settings, archive, policy_file, wait_seconds))
    click.echo(describe(run))
