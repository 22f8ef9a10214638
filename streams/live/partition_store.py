"""One partition of the persons table as the engine's store, without Faust.

The store reads the partition's local data (RocksDB or memory, behind ``LocalData``) and buffers
what a batch changes; ``take_writes`` hands the changes over as table writes, which the adapter sends
to the changelog and applies locally (``streams/live/faust_app.py``). Durability order: the alerts a
batch caused are acknowledged before its state changes are sent, so after a crash state is never
ahead of the alerts it caused.

Keys: person states under the 64-hex ``person_key``; the partition's clock under ``~clock:<p>``;
payment due times under ``~due:<p>:<person_key>``; the last log offset applied under ``~applied:<p>``.
Every bookkeeping key names its partition, so the partition that owns it is known by construction
(``owning_partition``), never by hashing a key that was derived from another. ``~`` sorts after hex
digits, so a scan of a partition in key order meets every person before any bookkeeping key.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Protocol

import orjson
from aiokafka.partitioner import murmur2

from streams.core.state import PersonState, dump_state, load_state

Write = tuple[bytes, bytes | None]
BOOKKEEPING = b"~"
_LEGACY_DUE_PREFIX = "~due:"  # before due keys named their partition: ~due:<person_key>


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (how person events reach the log)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def owning_partition(key: bytes, partitions: int) -> int:
    """The partition a table key belongs to: a person's by the partitioner that routed the person's
    events, a bookkeeping key by the partition it names (a legacy due key by its person's)."""
    if not key.startswith(BOOKKEEPING):
        return partition_of(key, partitions)
    parts = key.split(b":", 2)
    if parts[0] == _LEGACY_DUE_PREFIX[:-1].encode() and len(parts) == 2:
        return partition_of(parts[1], partitions)
    return int(parts[1])


class LocalData(Protocol):
    """Read access to one partition of the table's local store."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, start: bytes = b"", stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items of this partition with start <= key < stop, in key order."""
        ...


class PartitionStore:
    """The engine's store for one partition, with a write buffer per batch."""

    def __init__(self, local: LocalData, partition: int) -> None:
        self.local = local
        self.partition = partition
        self._states: dict[str, PersonState] = {}  # read or written in this batch
        self._changed: set[str] = set()
        self._due: list[tuple[int, str]] = []
        self._dues_of: dict[str, list[int]] = {}
        self._dues_changed: set[str] = set()
        self._legacy_due_keys: list[bytes] = []
        clock = self.local.get(self._clock_key)
        self._now: int | None = int(clock) if clock is not None else None
        self._now_changed = False
        prefix = self._due_prefix
        for key, value in self.local.items(prefix.encode(), prefix[:-1].encode() + b";"):
            self._load_dues(key.decode()[len(prefix) :], value)
        # A store written before due keys named their partition: read those keys, rewrite them at the next batch.
        for key, value in self.local.items(_LEGACY_DUE_PREFIX.encode(), b"~due;"):
            rest = key.decode()[len(_LEGACY_DUE_PREFIX) :]
            if ":" not in rest:
                self._load_dues(rest, value)
                self._dues_changed.add(rest)
                self._legacy_due_keys.append(key)

    def _load_dues(self, person_key: str, value: bytes) -> None:
        dues: list[int] = orjson.loads(value)
        self._dues_of.setdefault(person_key, []).extend(dues)
        for due in dues:
            heapq.heappush(self._due, (due, person_key))

    @property
    def _clock_key(self) -> bytes:
        return f"~clock:{self.partition}".encode()

    @property
    def _due_prefix(self) -> str:
        return f"~due:{self.partition}:"

    @property
    def applied_key(self) -> bytes:
        return f"~applied:{self.partition}".encode()

    # -- the engine's PartitionStore ---------------------------------------------------------------

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
        stored = ((key.decode(), value) for key, value in self.local.items(b"", BOOKKEEPING))
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

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        fired = []
        while self._due and self._due[0][0] <= now:
            due, person_key = heapq.heappop(self._due)
            fired.append((due, person_key))
            remaining = [d for d in self._dues_of.get(person_key, []) if d > now]
            self._dues_of[person_key] = remaining
            self._dues_changed.add(person_key)
        return fired

    # -- the batch boundary ------------------------------------------------------------------------

    def take_writes(self) -> list[Write]:
        """What this batch changed, as table writes; the batch buffers start empty again."""
        writes: list[Write] = [(key.encode(), dump_state(self._states[key])) for key in sorted(self._changed)]
        writes.extend((key, None) for key in self._legacy_due_keys)
        for person_key in sorted(self._dues_changed):
            dues = self._dues_of.get(person_key) or []
            writes.append(((self._due_prefix + person_key).encode(), orjson.dumps(dues) if dues else None))
            if not dues:
                self._dues_of.pop(person_key, None)
        if self._now_changed and self._now is not None:
            writes.append((self._clock_key, str(self._now).encode()))
        self._states.clear()
        self._changed.clear()
        self._dues_changed.clear()
        self._legacy_due_keys = []
        self._now_changed = False
        return writes

    def applied_marker(self, log_offset: int) -> Write:
        """The write that records the log offset this partition's state reflects after a batch."""
        return self.applied_key, str(log_offset).encode()
