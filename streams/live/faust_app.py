"""The live worker: a Faust app, wired in this one file.

    per-source topics --funnel--> unified log (events.v1) --rules--> alerts.v1, coverage.v1
                         \\                            \\
                          +-> dlq.v1 (undecodable)      +-> persons table (RocksDB or memory, changelogged)

- ``funnel`` checks every message on the four agency topics against the contract and forwards it,
  unchanged, to the unified log keyed by ``person_key``; anything else goes to the dead-letter topic
  with its topic, partition and offset.
- ``rules`` reads only the unified log. Each partition has its own engine (the same one the offline
  replay uses). Per batch: alerts and coverage status changes are sent and acknowledged, then state
  changes are persisted (see ``streams/person_table.py``), then the events are acknowledged. At-least-once: after a
  crash, events since the last commit are processed again and re-emit identical alert records.
- ``wall_clock`` (when the clock is ``wall``) runs on the leader and writes a tick to every
  partition every ``tick_interval`` seconds, aligned to local midnight (so hourly ticks fall on the
  hour), plus each policy checkpoint's 00:00 tick at its own instant (``streams.core.clock.due_ticks``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any

import faust
from aiohttp import web

from infra.kafka import faust_credentials
from infra.settings import Settings
from infra.topics import SOURCE_EVENT, Topics
from schemas.codec import LOG_EVENT_NAMES, UndecodableMessage, decode_message, encode_message
from schemas.models import ClockTick, CoverageRecord, DeadLetter, Event, SourceEvent
from schemas.times import format_instant
from streams.core.clock import due_ticks, tick_message
from streams.core.engine import Engine
from streams.core.policy import PolicyBook
from streams.live.outbox import Outbox
from streams.live.partition_store import TablePartition

ALERT_HEADERS = ("enrollbridge.log-partition", "enrollbridge.log-offset")


class WorkerStatus:
    """What this worker has done, for the status page and the logs (never any personal data)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.events = 0
        self.ticks = 0
        self.forwarded = 0
        self.dead_letters: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.clock: dict[int, int] = {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 1),
            "events": self.events,
            "ticks": self.ticks,
            "forwarded": self.forwarded,
            "dead_letters": dict(self.dead_letters),
            "alert_transitions": dict(self.alerts),
            "clock": {str(p): format_instant(now) for p, now in sorted(self.clock.items())},
        }


def _with_fetch_wait(app: faust.App, wait_ms: int) -> None:
    """Use ``wait_ms`` as the worker consumer's fetch wait (Faust fixes it at 1.5 s).

    A broker answers a waiting fetch as soon as records arrive -- except the embedded Tansu, which
    holds it for about half the wait: with Faust's 1.5 s every hop of the pipeline took 0.75 s there.
    """
    from faust.transport.drivers import aiokafka as driver

    class ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
            consumer = super()._create_consumer(loop)
            consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts
            return consumer

    class Consumer(driver.Consumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    app.transport.Consumer = Consumer


def create_app(settings: Settings, policies: PolicyBook) -> faust.App:
    topics = Topics(settings.topic_prefix)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_list],
        broker_credentials=faust_credentials(settings),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.store_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
        producer_acks=-1,
        producer_max_batch_size=256 * 1024,  # a batch's alerts, coverage and state go in a few record batches
        processing_guarantee="at_least_once",
        table_cleanup_interval=3600.0,
        recovery_consistency_check=settings.recovery_consistency_check,
    )
    _with_fetch_wait(app, settings.fetch_max_wait_ms)
    # Each batch sends its state changes to the changelog at once; Faust's buffer stalls at 100.
    app.producer.buffer.max_messages = max(10_000, 4 * settings.batch_size)
    status = WorkerStatus()
    app.status = status
    raw = {"key_type": bytes, "value_type": bytes, "partitions": settings.partitions}
    source_topics = app.topic(*topics.sources.values(), **raw)
    events_topic = app.topic(topics.events, **raw)
    persons = app.Table("persons", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    expected_type = {topic: SOURCE_EVENT[source].schema_name for source, topic in topics.sources.items()}
    engines: dict[int, tuple[Engine, TablePartition]] = {}

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None) -> Awaitable[Any]:  # fmt: skip
        future: Awaitable[Any] = await app.producer.send(topic, key, value, partition, None, headers)
        return future

    def dead_letter(event: faust.types.EventT, error: UndecodableMessage) -> DeadLetter:
        message = event.message
        status.dead_letters[error.code] += 1
        return DeadLetter(
            source=message.topic,
            origin=f"{message.topic}[{message.partition}]@{message.offset}",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error_code=error.code,
            message=str(error),
            record={"size": str(len(message.value or b""))},
        )

    @app.agent(source_topics)
    async def funnel(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            pending = []
            for event in batch:
                try:
                    record = decode_message(event.value, (expected_type[event.message.topic],))
                except UndecodableMessage as error:
                    letter = dead_letter(event, error)
                    pending.append(
                        await send(topics.dead_letters, event.message.topic.encode(), encode_message(letter))
                    )
                    continue
                assert isinstance(record, Event)
                person_key = getattr(record, "person_key", "").encode()
                # Forward the bytes unchanged: the log holds exactly what the agency's connector wrote.
                pending.append(await send(topics.events, person_key, event.value))
                status.forwarded += 1
            await asyncio.gather(*pending)

    coverage_changes: list[CoverageRecord] = []  # filled by the engine being driven, sent right after

    def engine_for(partition: int) -> tuple[Engine, TablePartition]:
        if partition not in engines:
            store = TablePartition(persons, partition, settings.partitions)
            engines[partition] = (Engine(policies, store, coverage_changes.append), store)
        return engines[partition]

    @app.agent(events_topic)
    async def rules(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            by_partition: dict[int, list[faust.types.EventT]] = {}
            for event in batch:
                by_partition.setdefault(event.message.partition, []).append(event)
            pending = []  # dead letters
            outbox = Outbox(app)
            for partition, events in by_partition.items():
                engine, _ = engine_for(partition)
                for event in events:
                    message = event.message
                    try:
                        logged = decode_message(event.value, LOG_EVENT_NAMES)
                    except UndecodableMessage as error:
                        pending.append(
                            await send(topics.dead_letters, b"events", encode_message(dead_letter(event, error)))
                        )
                        continue
                    assert isinstance(logged, ClockTick | SourceEvent)
                    if isinstance(logged, ClockTick):
                        status.ticks += 1
                    else:
                        status.events += 1
                    headers = [
                        (ALERT_HEADERS[0], str(partition).encode()),
                        (ALERT_HEADERS[1], str(message.offset).encode()),
                    ]
                    for alert in engine.process(logged):
                        status.alerts[f"{alert.kind} {alert.status}"] += 1
                        value = encode_message(alert)
                        await outbox.add(topics.alerts, partition, alert.alert_id.encode(), value, headers)
                    for change in coverage_changes:
                        key = change.person_key.encode()
                        await outbox.add(topics.coverage, partition, key, encode_message(change), headers)
                    coverage_changes.clear()
                if engine.now is not None:
                    status.clock[partition] = engine.now
            # Alerts and coverage are on their topics before the state that caused them.
            await outbox.flush()
            await asyncio.gather(*pending)
            for partition, events in by_partition.items():
                _, store = engines[partition]
                await store.persist(store.take_writes(), events[-1].message.offset)

    @app.on_partitions_revoked.connect
    async def forget_engines(_app: faust.App, revoked: set[Any], **_: Any) -> None:
        # A partition may come back after another worker advanced it: rebuild from the table then.
        engines.clear()

    @app.on_partitions_assigned.connect
    async def reset_engines(_app: faust.App, assigned: set[Any], **_: Any) -> None:
        engines.clear()

    if settings.clock == "wall":
        checkpoint_ticks = policies.checkpoint_tick_times()
        last_tick: list[int] = []  # what this leader wrote last; a new leader looks back one interval

        @app.timer(interval=settings.tick_interval, on_leader=True)
        async def wall_clock() -> None:
            interval_ms = int(settings.tick_interval * 1000)
            for at in due_ticks(
                last_tick[-1] if last_tick else None, int(time.time() * 1000), interval_ms, checkpoint_ticks
            ):
                value = tick_message(at)
                await asyncio.gather(*[await send(topics.events, None, value, p) for p in range(settings.partitions)])
                last_tick[:] = [at]

    @app.page("/")
    async def status_page(_view: Any, _request: web.Request) -> web.Response:
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in status.as_dict().items())
        return web.Response(
            text=f"<!doctype html><meta charset=utf-8><title>enrollbridge worker</title>"
            f"<h1>enrollbridge worker</h1><table>{rows}</table>",
            content_type="text/html",
        )

    @app.page("/status.json")
    async def status_json(_view: Any, _request: web.Request) -> web.Response:
        return web.json_response(status.as_dict())

    return app
