"""One partition of the Faust ``persons`` table as the engine's store.

Durability order (why this module exists): the worker sends a batch's alerts and waits for the
broker to acknowledge them, then sends the batch's state changes to the table's changelog and waits
again, and only then writes them to the local store (RocksDB or memory). After a crash, state is
therefore never ahead of the alerts it caused: events after the last committed offset are processed
again and re-emit their alerts (identical records, same alert_id), never lose them.

Keys: person states under the 64-hex ``person_key``; the partition's clock under ``~clock:<p>``;
payment due times under ``~due:<person_key>``; the last log offset applied under ``~applied:<p>``.
``~`` sorts after hex digits, so a scan of a partition in key order meets every person before any
bookkeeping key.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from streams.core.state import PersonState, dump_state, load_state
from streams.live.outbox import Outbox

Write = tuple[bytes, bytes | None]
_DUE_PREFIX = "~due:"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (how person events reach the log)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class _LocalData:
    """Raw access to one partition of the table's local store (RocksDB or memory)."""

    def __init__(self, table: Any, partition: int, partitions: int) -> None:
        from faust.stores.rocksdb import Store as RocksDBStore

        self.store = table.data
        self.partition = partition
        self.partitions = partitions
        self.rocksdb = isinstance(self.store, RocksDBStore)
        # The memory store keeps every partition in one dict: this partition's keys are found once
        # (hashing every key on every sweep cost more than the sweep) and then kept up to date here,
        # the only writer of this partition while the engine that owns it lives.
        self._keys: set[bytes] | None = None

    def _db(self) -> Any:
        return self.store._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        value = self._db().get(key) if self.rocksdb else self.store.data.get(key)
        return None if value is None else bytes(value)

    def items(self, start: bytes = b"", stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items of this partition with start <= key < stop, in key order."""
        if self.rocksdb:
            offset_key = self.store.offset_key
            for key, value in self._db().items(from_key=start):
                if stop is not None and key >= stop:
                    return
                if key != offset_key:
                    yield key, value
            return
        keys = sorted(key for key in self._own_keys() if key >= start and (stop is None or key < stop))
        for key in keys:
            yield key, self.store.data[key]

    def _own_keys(self) -> set[bytes]:
        if self._keys is None:
            self._keys = {key for key in self.store.data if partition_of(key, self.partitions) == self.partition}
        return self._keys

    def write(self, key: bytes, value: bytes | None) -> None:
        if self.rocksdb:
            db = self._db()
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
        elif value is None:
            self.store.data.pop(key, None)
            self._own_keys().discard(key)
        else:
            self.store.data[key] = value
            self._own_keys().add(key)


class TablePartition:
    """The engine's store for one partition of the Faust table, with a write buffer per batch."""

    def __init__(self, table: Any, partition: int, partitions: int) -> None:
        self.table = table
        self.partition = partition
        self.local = _LocalData(table, partition, partitions)
        self._changelog: str = table.changelog_topic.get_topic_name()
        self._states: dict[str, PersonState] = {}  # read or written in this batch
        self._changed: set[str] = set()
        self._due: list[tuple[int, str]] = []
        self._dues_of: dict[str, list[int]] = {}
        self._dues_changed: set[str] = set()
        clock = self.local.get(self._clock_key)
        self._now: int | None = int(clock) if clock is not None else None
        self._now_changed = False
        for key, value in self.local.items(_DUE_PREFIX.encode(), b"~due;"):
            person_key = key.decode()[len(_DUE_PREFIX) :]
            dues = orjson.loads(value)
            self._dues_of[person_key] = dues
            for due in dues:
                heapq.heappush(self._due, (due, person_key))

    @property
    def _clock_key(self) -> bytes:
        return f"~clock:{self.partition}".encode()

    # -- PartitionStore --------------------------------------------------------------------------

    def get(self, person_key: str) -> PersonState | None:
        state = self._states.get(person_key)
        if state is None:
            stored = self.local.get(person_key.encode())
            if stored is not None:
                state = self._states[person_key] = load_state(stored)
        return state

    def put(self, person_key: str, state: PersonState) -> None:
        self._states[person_key] = state
        self._changed.add(person_key)

    def items_by_key(self) -> Iterator[tuple[str, PersonState]]:
        stored = ((key.decode(), value) for key, value in self.local.items(b"", b"~"))
        pending = sorted(person_key for person_key in self._states if person_key in self._changed)
        next_pending = 0
        for person_key, value in stored:
            while next_pending < len(pending) and pending[next_pending] < person_key:
                new_key = pending[next_pending]
                yield new_key, self._states[new_key]
                next_pending += 1
            if next_pending < len(pending) and pending[next_pending] == person_key:
                next_pending += 1
            # A state read or written in this batch is the current one; others are only read here and
            # not kept, so a sweep over millions of persons holds one at a time.
            yield person_key, self._states.get(person_key) or load_state(value)
        for new_key in pending[next_pending:]:
            yield new_key, self._states[new_key]

    def load_now(self) -> int | None:
        return self._now

    def save_now(self, now: int) -> None:
        self._now = now
        self._now_changed = True

    def add_due(self, due: int, person_key: str) -> None:
        heapq.heappush(self._due, (due, person_key))
        self._dues_of.setdefault(person_key, []).append(due)
        self._dues_changed.add(person_key)

    def pop_due(self, now: int) -> list[str]:
        fired = []
        while self._due and self._due[0][0] <= now:
            _, person_key = heapq.heappop(self._due)
            fired.append(person_key)
            remaining = [d for d in self._dues_of.get(person_key, []) if d > now]
            self._dues_of[person_key] = remaining
            self._dues_changed.add(person_key)
        return fired

    # -- the batch boundary ------------------------------------------------------------------------

    def take_writes(self) -> list[Write]:
        """What this batch changed, as table writes; the batch buffers start empty again."""
        writes: list[Write] = [(key.encode(), dump_state(self._states[key])) for key in sorted(self._changed)]
        for person_key in sorted(self._dues_changed):
            dues = self._dues_of.get(person_key) or []
            writes.append(((_DUE_PREFIX + person_key).encode(), orjson.dumps(dues) if dues else None))
            if not dues:
                self._dues_of.pop(person_key, None)
        if self._now_changed and self._now is not None:
            writes.append((self._clock_key, str(self._now).encode()))
        self._states.clear()
        self._changed.clear()
        self._dues_changed.clear()
        self._now_changed = False
        return writes

    async def persist(self, writes: list[Write], log_offset: int) -> None:
        """Changelog first (acknowledged), then the local store.

        The records go straight to the changelog topic in record batches (``streams.live.outbox``) rather
        than through ``Table.send_changelog``, whose per-record futures and buffer cost more than the
        rules do; the records, their partition and the store's persisted offset are what Faust's own
        path gives.

        The batch ends with one record written alone after the rest is acknowledged: the log offset
        this partition's state now reflects (``~applied:<p>``). The changelog's last batch is then a
        single record, so its end is never hidden by a broker that reports a batch's base offset as
        the end (the embedded Tansu does), and a worker taking the partition over recovers it whole.
        """
        if not writes:
            return
        outbox = Outbox(self.table.app)
        for key, value in writes:
            await outbox.add(self._changelog, self.partition, key, value)
        await outbox.flush()
        marker = (self._applied_key, str(log_offset).encode())
        sent = await (await self._send(*marker))
        for key, value in [*writes, marker]:
            self.local.write(key, value)
        # What Faust's changelog callback does: on restart, recovery resumes after this offset.
        self.table.data.set_persisted_offset(sent.topic_partition, sent.offset)

    async def _send(self, key: bytes, value: bytes | None) -> Any:
        producer = self.table.app.producer
        return await producer.send(self._changelog, key, value, self.partition, None, None)

    @property
    def _applied_key(self) -> bytes:
        return f"~applied:{self.partition}".encode()
