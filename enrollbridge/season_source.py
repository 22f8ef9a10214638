"""Streaming a past season into Kafka in event-time order, with the clock following event time.

Events go to their agency topics, as ``ingest`` would publish them; the worker's funnel forwards
them to the unified log, keeping the order within each topic but not across topics. So that the
live run sees what a replay sees, this source waits (a barrier) until it has read back from the
unified log everything it published so far:
- before each tick, which it then writes to every partition: no event lands behind a tick it precedes;
- before an event of a person whose previous, still unconfirmed event went to another agency's
  topic: each person's events reach the log in event-time order.

At each tick every source declares itself complete up to the tick's time (its watermark), as agencies
that deliver in event time would: the dashboard shows them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from infra.kafka import aiokafka_options, start_client
from infra.readback import TopicTail
from infra.settings import Settings
from infra.topics import SOURCE_EVENT, Topics
from schemas.codec import encode_message
from schemas.models import ClockTick, LogEvent, SourceWatermark
from streams.core.clock import tick_message
from streams.replay import MergedLog

SOURCE_OF_TYPE = {model.schema_name: source for source, model in SOURCE_EVENT.items()}
_IN_FLIGHT = 5_000


@dataclass
class Published:
    events: int = 0
    ticks: int = 0
    seconds: float = 0.0
    barriers: int = 0
    log_ends: dict[int, int] = field(default_factory=dict)  # records per partition of the unified log


async def publish_season(
    settings: Settings,
    merged: MergedLog,
    tick_times: list[int],
    until: int | None,
    progress: bool | None = None,
    on_progress: Callable[[tqdm], None] | None = None,  # type: ignore[type-arg]
    barrier_timeout: float = 180.0,
) -> Published:
    """Publish the merged season, ticking every partition at each of ``tick_times``."""
    topics = Topics(settings.topic_prefix)
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all", linger_ms=10, max_batch_size=512 * 1024)
    log = TopicTail(settings, topics.events, settings.partitions)
    await start_client(producer, settings)
    await log.start()
    published = Published()
    started = time.monotonic()
    waiting = "the unified log (is a worker running on these topics?)"
    try:
        await log.drain()
        partitions = list(log.ends)
        in_flight: list[asyncio.Future[object]] = []
        unconfirmed: dict[bytes, str] = {}  # person -> agency topic of their events since the last barrier
        pending: set[str] = set()  # ids of events published since the last barrier

        async def barrier() -> None:
            nonlocal in_flight
            await asyncio.gather(*in_flight)
            in_flight = []
            await log.wait_for_events(pending, barrier_timeout, waiting)
            unconfirmed.clear()
            published.barriers += 1

        disabled = None if progress is None else not progress
        with tqdm(total=merged.count, unit=" events", desc="streaming", disable=disabled) as bar:
            event: LogEvent
            for event in merged.stream(tick_times, until):
                if isinstance(event, ClockTick):
                    await barrier()
                    value = tick_message(event.occurred_at)
                    await asyncio.gather(
                        *[await producer.send(topics.events, value=value, partition=p) for p in partitions]
                    )
                    published.ticks += 1
                    # Streamed in event-time order: at a tick, every source has delivered what came before it.
                    declared_at = int(time.time() * 1000)
                    for source in SOURCE_EVENT:
                        watermark = SourceWatermark(
                            source=source,
                            complete_through=event.occurred_at,
                            declared_at=declared_at,
                            origin="season streamed in event time",
                        )
                        in_flight.append(await producer.send(topics.watermarks, key=source.encode(),
                                                             value=encode_message(watermark)))  # fmt: skip
                    if on_progress:
                        on_progress(bar)
                    continue
                key = event.person_key.encode()
                topic = topics.source(SOURCE_OF_TYPE[event.schema_name])
                if unconfirmed.get(key, topic) != topic:
                    await barrier()
                unconfirmed[key] = topic
                pending.add(event.event_id)
                in_flight.append(await producer.send(topic, key=key, value=encode_message(event)))
                published.events += 1
                if len(in_flight) >= _IN_FLIGHT:
                    await asyncio.gather(*in_flight)
                    in_flight = []
                bar.update(1)
            await barrier()
        await log.drain()
        published.log_ends = dict(log.ends)
    finally:
        await producer.stop()
        await log.stop()
    published.seconds = time.monotonic() - started
    return published
