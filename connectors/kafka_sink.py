"""Publishing a connector's output to Kafka: events to the agency's topic, dead letters to the DLQ topic.

Nothing is sent while the input is read: each message is encoded into a temporary spool file as it
comes, and ``publish`` sends them all, in order, once the whole input was read. So a file that turns
out unreadable part-way (a bad byte after the first MiB) publishes nothing, as with ``--out``.
Every send is acknowledged by all in-sync replicas (acks=all); ``publish`` waits for the last one
and raises if any failed, so ``ingest`` only reports success for records that are on their topics.
"""

from __future__ import annotations

import struct
import tempfile
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from infra.errors import InputError
from infra.kafka import kafka_python_options
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import encode_message
from schemas.models import DeadLetter, SourceEvent, SourceWatermark

_FRAME = struct.Struct(">?II")  # to the dead-letter topic?, key length, value length


class KafkaSink:
    def __init__(self, settings: Settings, source: str) -> None:
        self.topics = Topics(settings.topic_prefix)
        self.topic = self.topics.source(source)
        try:
            self.producer = KafkaProducer(
                **kafka_python_options(settings), acks="all", linger_ms=20, batch_size=256 * 1024, retries=5,
                request_timeout_ms=30_000, max_block_ms=30_000,
            )  # fmt: skip
        except KafkaError as error:
            raise InputError(f"cannot reach Kafka at {settings.bootstrap_servers}: {type(error).__name__}") from None
        self._spool = tempfile.TemporaryFile(prefix="enrollbridge-ingest-")  # noqa: SIM115 -- closed by close()
        self.failures: list[str] = []
        self.sent = 0

    def _keep(self, dead_letter: bool, key: bytes, value: bytes) -> None:
        self._spool.write(_FRAME.pack(dead_letter, len(key), len(value)) + key + value)

    def event(self, event: SourceEvent) -> None:
        self._keep(False, event.person_key.encode(), encode_message(event))

    def dead_letter(self, letter: DeadLetter) -> None:
        self._keep(True, letter.source.encode(), encode_message(letter))

    def _failed(self, error: Any) -> None:
        self.failures.append(type(error).__name__)

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1
        try:
            future = self.producer.send(topic, key=key, value=value)
        except KafkaError as error:  # refused before it was sent (buffer full for max_block_ms)
            self._failed(error)
        else:
            future.add_errback(self._failed)

    def publish(self) -> None:
        """Send everything kept, in the order it came, and wait until all of it is acknowledged."""
        self._spool.seek(0)
        while frame := self._spool.read(_FRAME.size):
            dead_letter, key_length, value_length = _FRAME.unpack(frame)
            key, value = self._spool.read(key_length), self._spool.read(value_length)
            self._send(self.topics.dead_letters if dead_letter else self.topic, key, value)
        self.producer.flush(timeout=120)
        if self.failures:
            raise InputError(f"{len(self.failures)} of {self.sent} records were not published ({self.failures[0]})")

    def watermark(self, watermark: SourceWatermark) -> None:
        """Declare the source complete up to a time, once its records are published and acknowledged."""
        self._send(self.topics.watermarks, watermark.source.encode(), encode_message(watermark))
        self.producer.flush(timeout=120)
        if self.failures:
            raise InputError(f"the watermark of {watermark.source} was not published ({self.failures[0]})")

    def close(self) -> None:
        """Let go of the producer and the spool; whatever was not published is dropped."""
        try:
            self.producer.close(timeout=10)
        finally:
            self._spool.close()
