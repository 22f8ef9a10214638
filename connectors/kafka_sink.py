"""Publishing a connector's output to Kafka: events to the agency's topic, dead letters to the DLQ topic.

Every send is acknowledged by all in-sync replicas (acks=all); ``close`` waits for the last one and
raises if any failed, so ``ingest`` only reports success for records that are on their topics.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from infra.errors import InputError
from infra.kafka import kafka_python_options
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import encode_message
from schemas.models import DeadLetter, SourceEvent, SourceWatermark


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
        self.failures: list[str] = []
        self.sent = 0

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        future = self.producer.send(topic, key=key, value=value)
        future.add_errback(self._failed)
        self.sent += 1

    def _failed(self, error: Any) -> None:
        self.failures.append(type(error).__name__)

    def event(self, event: SourceEvent) -> None:
        self._send(self.topic, event.person_key.encode(), encode_message(event))

    def dead_letter(self, letter: DeadLetter) -> None:
        self._send(self.topics.dead_letters, letter.source.encode(), encode_message(letter))

    def watermark(self, watermark: SourceWatermark) -> None:
        """Declare the source complete up to a time (after its records: the producer keeps their order)."""
        self._send(self.topics.watermarks, watermark.source.encode(), encode_message(watermark))

    def close(self) -> None:
        try:
            self.producer.flush(timeout=120)
        finally:
            self.producer.close(timeout=10)
        if self.failures:
            raise InputError(f"{len(self.failures)} of {self.sent} records were not published ({self.failures[0]})")
