"""The worker's batch processors without Kafka or Faust: bytes in, messages and table writes out.

The live tests (``tests/test_live.py``) run the same processors through Faust on a real broker; these
pin what the processors themselves promise, so a failure says whether the rules' driver or the Faust
adapter is at fault.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from infra.topics import Topics
from schemas.codec import decode_message, encode_message
from schemas.models import AlertRecord, CoverageRecord, DeadLetter, LogEvent
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import load_policies
from streams.live.partition_store import PartitionStore, Write, owning_partition, partition_of
from streams.live.processor import Funnel, RulesProcessor, WorkerStatus
from tests.support import hardship, key_of, payment, registration, roster, tick

TOPICS = Topics("t")


class DictData:
    """A partition's local data in a dict: what the adapter's RocksDB or memory store gives the processor."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, start: bytes = b"", stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.data):
            if key >= start and (stop is None or key < stop):
                yield key, self.data[key]

    def apply(self, writes: list[Write]) -> None:
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


def _season() -> list[LogEvent]:
    """A small season in log order: an unenrolled student, a duplicate, a payer without registration
    (its grace period runs out after a later tick), an orphan charged in full, a late payer."""
    return [
        roster("ann", "2023-09-01T08:00"),
        roster("bob", "2023-09-01T08:00", school="S2"),
        registration("bob", "2023-09-05T10:00", "E1"),
        registration("bob", "2023-09-06T10:00", "E2", region="450102"),
        payment("cat", "2023-09-20T10:00", "P1"),
        hardship("dan", "2023-09-02T10:00", "H1"),
        registration("dan", "2023-09-03T10:00", "E3"),
        payment("dan", "2023-09-04T10:00", "P2"),
        tick("2023-09-25T00:00"),
        tick("2023-10-01T00:00"),
        registration("eve", "2023-10-02T10:00", "E4"),
        payment("eve", "2024-01-05T10:00", "P3"),
        tick("2024-01-10T00:00"),
    ]


def _replayed(events: list[LogEvent]) -> tuple[list[AlertRecord], list[CoverageRecord]]:
    coverage: list[CoverageRecord] = []
    engine = Engine(load_policies(), MemoryStore(), coverage.append)
    alerts = [alert for event in events for alert in engine.process(event)]
    return alerts, coverage


def _run(batches: list[list[LogEvent]], restart_between: bool) -> tuple[list[bytes], DictData]:
    """Process the batches as one log partition; the table's writes are applied between batches, and
    with ``restart_between`` every batch gets a new processor over the stored data (a restarted worker)."""
    data = DictData()
    status = WorkerStatus()
    processor = RulesProcessor(load_policies(), TOPICS, 2, data, status)
    sent: list[bytes] = []
    offset = 0
    for batch in batches:
        if restart_between:
            processor = RulesProcessor(load_policies(), TOPICS, 2, data, status)
        records = []
        for event in batch:
            records.append((offset, encode_message(event)))
            offset += 1
        output = processor.process(records)
        for message in output.messages:
            assert message.partition == 2  # alerts and coverage stay in the event's partition
            sent.append(message.value)
        data.apply(output.table_writes)
        if output.applied:
            data.apply([output.applied])
    return sent, data


@pytest.mark.parametrize("batch_size", [1, 3, 100])
@pytest.mark.parametrize("restart_between", [False, True], ids=["one-worker", "restarted-every-batch"])
def test_the_processor_emits_what_the_replay_emits(batch_size: int, restart_between: bool) -> None:
    events = _season()
    alerts, coverage = _replayed(events)
    assert {a.kind for a in alerts} >= {"UNENROLLED", "DUPLICATE_ENROLLMENT", "PAID_UNREGISTERED", "OVERPAID"}
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    sent, data = _run(batches, restart_between)
    decoded = [decode_message(value, ("AlertRecord", "CoverageRecord")) for value in sent]
    assert [a for a in decoded if isinstance(a, AlertRecord)] == alerts
    assert [c for c in decoded if isinstance(c, CoverageRecord)] == coverage
    assert data.get(b"~applied:2") == str(len(events) - 1).encode()


def test_a_grace_period_survives_a_restart() -> None:
    # The payment's due time is written with the batch; a new processor finds it and fires it.
    sent, data = _run([[payment("cat", "2023-09-20T10:00", "P1")], [tick("2023-09-28T00:00")]], restart_between=True)
    assert list(data.items(b"~due:", b"~due;")) == []  # fired, so forgotten
    [alert] = [decode_message(value, ("AlertRecord",)) for value in sent]
    assert isinstance(alert, AlertRecord) and alert.kind == "PAID_UNREGISTERED"


def test_bookkeeping_keys_name_the_partition_that_owns_them() -> None:
    person = key_of("ann")
    assert owning_partition(person.encode(), 4) == partition_of(person.encode(), 4)
    assert owning_partition(f"~due:3:{person}".encode(), 4) == 3  # not the hash of the derived key
    assert owning_partition(b"~clock:1", 4) == 1
    assert owning_partition(b"~applied:0", 4) == 0
    # A due key written before keys named their partition belongs to its person's partition.
    assert owning_partition(f"~due:{person}".encode(), 4) == partition_of(person.encode(), 4)
    # The derived key hashes elsewhere for most persons: re-hashing it was the bug.
    persons = [key_of(f"p{n}").encode() for n in range(40)]
    assert sum(partition_of(b"~due:" + p, 4) != partition_of(p, 4) for p in persons) > 10


def test_a_store_written_with_legacy_due_keys_is_migrated() -> None:
    person = key_of("cat")
    data = DictData()
    data.data[f"~due:{person}".encode()] = orjson.dumps([1_700_000_000_000])
    store = PartitionStore(data, 1)
    assert store.pop_due(1_700_000_000_000) == [(1_700_000_000_000, person)]
    writes = dict(store.take_writes())
    assert writes[f"~due:{person}".encode()] is None  # the legacy key is deleted
    assert f"~due:1:{person}".encode() in writes


def test_undecodable_log_messages_become_dead_letters_and_the_batch_goes_on() -> None:
    status = WorkerStatus()
    processor = RulesProcessor(load_policies(), TOPICS, 0, DictData(), status)
    output = processor.process([(7, b"\xc3\x01garbage"), (8, encode_message(roster("ann", "2023-09-01T08:00")))])
    [letter_message] = [m for m in output.messages if m.topic == TOPICS.dead_letters]
    letter = decode_message(letter_message.value, ("DeadLetter",))
    assert isinstance(letter, DeadLetter)
    assert (letter.topic, letter.partition, letter.offset) == (TOPICS.events, 0, 7)
    assert status.events == 1 and status.dead_letters
    assert output.applied == (b"~applied:0", b"8")


def test_the_funnel_forwards_the_bytes_unchanged_or_dead_letters_them() -> None:
    status = WorkerStatus()
    funnel = Funnel(TOPICS, status)
    event = registration("bob", "2023-09-05T10:00", "E1")
    value = encode_message(event)
    forwarded = funnel.route(TOPICS.sources["insurance"], 1, 5, value)
    assert (forwarded.topic, forwarded.key, forwarded.value) == (TOPICS.events, event.person_key.encode(), value)
    # The right bytes on the wrong agency's topic are a dead letter too.
    wrong = funnel.route(TOPICS.sources["tax"], 1, 6, value)
    letter = decode_message(wrong.value, ("DeadLetter",))
    assert wrong.topic == TOPICS.dead_letters and isinstance(letter, DeadLetter) and letter.offset == 6
    assert status.forwarded == 1


def test_the_status_counts_records_of_forgotten_years() -> None:
    status = WorkerStatus()
    processor = RulesProcessor(load_policies(), TOPICS, 0, DictData(), status)
    late = registration("eve", "2021-09-05T10:00", "E0", year=2022, recorded="2027-01-05T08:00")
    processor.process([(0, encode_message(tick("2027-01-01T00:00"))), (1, encode_message(late))])
    assert status.as_dict()["left_out"] == {"forgotten": 1}  # history_years = 3: 2022 is before 2024
