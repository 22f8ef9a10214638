"""Reading topics back: a topic from its beginning to its end, and how far a worker has got.

Ends are established by reading, not from the broker's reported end offsets: the embedded Tansu
reports a partition's end as the base offset of its last batch plus one, which is short whenever
that batch holds several records (real Kafka reports the last offset plus one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.errors import InputError
from infra.kafka import aiokafka_options, start_client
from infra.settings import Settings
from schemas.codec import peek_event_id

_QUIET_MS = 300


class TopicTail:
    """Follows a topic from its beginning and knows each partition's true end (last offset read + 1)."""

    def __init__(self, settings: Settings, topic: str, partitions: int, start: dict[int, int] | None = None) -> None:
        self.consumer = AIOKafkaConsumer(
            **aiokafka_options(settings), enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
        )
        self.settings = settings
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.start_offsets = start or {}
        self.ends = {p: self.start_offsets.get(p, 0) for p in range(partitions)}

    async def start(self) -> None:
        """Position at each partition's beginning, or at its ``start`` offset where one was given."""
        await start_client(self.consumer, self.settings)
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        for tp in self.partitions:
            if tp.partition in self.start_offsets:
                self.consumer.seek(tp, self.start_offsets[tp.partition])

    async def stop(self) -> None:
        await self.consumer.stop()

    async def drain(self, quiet_ms: int = _QUIET_MS) -> list[Any]:
        """Records that arrived since the last call (empty when nothing came for ``quiet_ms``)."""
        records: list[Any] = []
        while True:
            batches = await self.consumer.getmany(timeout_ms=quiet_ms if not records else 10, max_records=50_000)
            if not batches:
                return records
            for tp, batch in batches.items():
                records.extend(batch)
                self.ends[tp.partition] = max(self.ends[tp.partition], batch[-1].offset + 1)

    async def wait_for_events(self, pending: set[str], timeout: float, what: str) -> None:
        """Wait until every event id in ``pending`` has been read from the topic (ids are removed as seen).

        Counting records is not enough: a worker that restarts forwards its last batch again, and those
        copies would stand in for events not yet forwarded.
        """
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise InputError(f"{what}: {len(pending)} events still missing after {timeout:.0f}s")
            for record in await self.drain(quiet_ms=10):
                event_id = peek_event_id(record.value or b"")
                if event_id is not None:
                    pending.discard(event_id)

    async def wait_for(self, expected: dict[int, int], timeout: float, what: str) -> None:
        """Wait until every partition holds at least ``expected[p]`` records."""
        deadline = time.monotonic() + timeout
        while any(self.ends[p] < count for p, count in expected.items()):
            if time.monotonic() > deadline:
                missing = sum(max(0, count - self.ends[p]) for p, count in expected.items())
                raise InputError(f"{what}: still {missing} records short after {timeout:.0f}s")
            await self.drain(quiet_ms=10)


async def read_topic(settings: Settings, topic: str) -> AsyncIterator[Any]:
    """Every record of a topic, partition by partition in offset order, until the topic is quiet."""
    tail = TopicTail(settings, topic, await partition_count(settings, topic))
    await tail.start()
    try:
        records = []
        while batch := await tail.drain():
            records.extend(batch)
        records.sort(key=lambda record: (record.partition, record.offset))
        for record in records:
            yield record
    finally:
        await tail.stop()


async def partition_count(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(**aiokafka_options(settings))
    await start_client(consumer, settings)
    try:
        await consumer.topics()  # refreshes metadata
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        await consumer.stop()


async def committed_offsets(settings: Settings, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The offsets consumer group ``group`` has committed on ``topic`` (0 where it has none)."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await start_client(admin, settings)
    try:
        return await _committed(admin, group, topic, partitions)
    finally:
        await admin.close()


async def _committed(admin: AIOKafkaAdminClient, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    wanted = [TopicPartition(topic, p) for p in partitions]
    found = await admin.list_consumer_group_offsets(group, partitions=wanted)
    return {tp.partition: max(0, found[tp].offset) if tp in found else 0 for tp in wanted}


async def wait_until_processed(
    settings: Settings, group: str, ends: dict[int, int], topic: str, timeout: float = 180.0
) -> None:
    """Wait until consumer group ``group`` has committed ``ends[p]`` on every partition of ``topic``."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await start_client(admin, settings)
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = await _committed(admin, group, topic, ends)
            behind = sum(max(0, end - committed[p]) for p, end in ends.items())
            if behind == 0:
                return
            if time.monotonic() > deadline:
                raise InputError(f"group {group} is still {behind} messages behind on {topic} after {timeout:.0f}s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
