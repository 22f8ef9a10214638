"""The worker's two steps as batch processors that know nothing of Faust or Kafka clients.

- ``Funnel``: a message of an agency topic in, one message out: the same bytes to the unified log
  keyed by ``person_key``, or a dead letter carrying the topic, partition and offset.
- ``RulesProcessor``: one partition of the unified log. A batch of (offset, message bytes) in; out
  the messages to send (alert transitions and coverage changes to the same partition of their
  topics, dead letters) and the table writes that persist the partition's state, in the order the
  adapter must make them durable (``streams/live/faust_app.py``).

Both are unit-tested without a broker; the adapter only moves bytes between them and Faust.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.topics import SOURCE_EVENT, Topics
from schemas.codec import LOG_EVENT_NAMES, UndecodableMessage, decode_message, encode_message
from schemas.models import ClockTick, CoverageRecord, DeadLetter, Event, SourceEvent
from schemas.times import format_instant
from streams.core.engine import Engine
from streams.core.policy import PolicyBook
from streams.live.partition_store import LocalData, PartitionStore, Write

# Every alert and coverage record names the log position of the event that caused it.
LOG_POSITION_HEADERS = ("enrollbridge.log-partition", "enrollbridge.log-offset")
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send. ``partition`` None lets the producer's partitioner choose by key."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: Headers = ()


@dataclass(slots=True)
class RulesOutput:
    """What one batch of one log partition produced, in the order it must become durable."""

    messages: list[Outgoing] = field(default_factory=list)  # alerts and coverage, then dead letters
    table_writes: list[Write] = field(default_factory=list)  # the partition's state changes
    applied: Write | None = None  # written alone, after the table writes are acknowledged


class WorkerStatus:
    """What this worker has done, for the status page and the logs (never any personal data)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.events = 0
        self.ticks = 0
        self.forwarded = 0
        self.dead_letters: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.left_out: Counter[str] = Counter()  # events left out of a person's state: overflow, forgotten year
        self.clock: dict[int, int] = {}
        self.clock_status: dict[str, Any] = {}  # the leader's live clock: watermarks, clock time

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 1),
            "events": self.events,
            "ticks": self.ticks,
            "forwarded": self.forwarded,
            "dead_letters": dict(self.dead_letters),
            "alert_transitions": dict(self.alerts),
            "left_out": dict(self.left_out),
            "clock": {str(p): format_instant(now) for p, now in sorted(self.clock.items())},
            "live_clock": self.clock_status,
        }


def dead_letter(topic: str, partition: int, offset: int, value: bytes | None, error: UndecodableMessage) -> DeadLetter:
    """A message that is not what its topic promises, with where it was and why (never its content)."""
    return DeadLetter(
        source=topic,
        origin=f"{topic}[{partition}]@{offset}",
        topic=topic,
        partition=partition,
        offset=offset,
        error_code=error.code,
        message=str(error),
        record={"size": str(len(value or b""))},
    )


class Funnel:
    """Agency topics to the unified log: each message checked against the contract, forwarded unchanged."""

    def __init__(self, topics: Topics, status: WorkerStatus) -> None:
        self.topics = topics
        self.status = status
        self._expected = {topic: SOURCE_EVENT[source].schema_name for source, topic in topics.sources.items()}

    def route(self, topic: str, partition: int, offset: int, value: bytes | None) -> Outgoing:
        try:
            record = decode_message(value or b"", (self._expected[topic],))
        except UndecodableMessage as error:
            self.status.dead_letters[error.code] += 1
            letter = dead_letter(topic, partition, offset, value, error)
            return Outgoing(self.topics.dead_letters, topic.encode(), encode_message(letter))
        assert isinstance(record, Event) and value is not None
        self.status.forwarded += 1
        # Forward the bytes unchanged: the log holds exactly what the agency's connector wrote.
        return Outgoing(self.topics.events, getattr(record, "person_key", "").encode(), value)


class RulesProcessor:
    """The rules over one partition of the unified log: the engine the offline replay drives, on the
    partition's stored state."""

    def __init__(
        self, policies: PolicyBook, topics: Topics, partition: int, local: LocalData, status: WorkerStatus
    ) -> None:
        self.topics = topics
        self.partition = partition
        self.status = status
        self.store = PartitionStore(local, partition)
        self._coverage: list[CoverageRecord] = []  # filled by the engine while it processes one event
        self.engine = Engine(
            policies,
            self.store,
            self._coverage.append,
            on_overflow=lambda _event: status.left_out.update(("overflow",)),
            on_forgotten=lambda _event: status.left_out.update(("forgotten",)),
        )

    def process(self, records: Sequence[tuple[int, bytes | None]]) -> RulesOutput:
        """Apply a batch of (offset, message value) in log order."""
        output = RulesOutput()
        dead: list[Outgoing] = []
        topics, partition = self.topics, self.partition
        for offset, value in records:
            try:
                logged = decode_message(value or b"", LOG_EVENT_NAMES)
            except UndecodableMessage as error:
                self.status.dead_letters[error.code] += 1
                letter = dead_letter(topics.events, partition, offset, value, error)
                dead.append(Outgoing(topics.dead_letters, b"events", encode_message(letter)))
                continue
            assert isinstance(logged, ClockTick | SourceEvent)
            if isinstance(logged, ClockTick):
                self.status.ticks += 1
            else:
                self.status.events += 1
            headers = (
                (LOG_POSITION_HEADERS[0], str(partition).encode()),
                (LOG_POSITION_HEADERS[1], str(offset).encode()),
            )
            for alert in self.engine.process(logged):
                self.status.alerts[f"{alert.kind} {alert.status}"] += 1
                output.messages.append(
                    Outgoing(topics.alerts, alert.alert_id.encode(), encode_message(alert), partition, headers)
                )
            for change in self._coverage:
                output.messages.append(
                    Outgoing(topics.coverage, change.person_key.encode(), encode_message(change), partition, headers)
                )
            self._coverage.clear()
        if self.engine.now is not None:
            self.status.clock[partition] = self.engine.now
        output.messages.extend(dead)
        output.table_writes = self.store.take_writes()
        if records and output.table_writes:
            output.applied = self.store.applied_marker(records[-1][0])
        return output
