"""The one module that touches Faust: it adapts the worker's batch processors to Faust's agents, table,
producer and leader timer, and runs the app.

    per-source topics --funnel--> unified log (events.v1) --rules--> alerts.v1, coverage.v1
                         \\                            \\
                          +-> dlq.v1 (undecodable)      +-> persons table (RocksDB or memory, changelogged)

- ``funnel`` takes the four agency topics a fetch at a time too: it hands every record to
  ``processor.Funnel`` and sends what it returns (the same bytes to the unified log, in record
  batches to the partitions the producer's partitioner gives their keys, or a dead letter); the
  records are acknowledged once the broker has acknowledged what they became.
- ``rules`` takes the unified log a fetch at a time, not as Faust events (``_with_consumer``: Faust's
  per-message machinery cost more than the rules): it hands each partition's records to that
  partition's ``processor.RulesProcessor``, then makes its output durable in order: alerts and
  coverage changes sent and acknowledged (one record batch per topic partition,
  ``streams/live/outbox.py``), then the state changes sent to the table's changelog and
  acknowledged, then written to the local store; only then are the records acknowledged to Faust,
  whose commit loop commits them. At-least-once: after a crash, events since the last commit are
  processed again and re-emit identical alert records. Faust still subscribes to the log, assigns
  its partitions with the table's and rebalances them; a revocation waits for the fetch in hand.
- ``wall_clock`` (when the clock is ``wall``) runs on the leader: it reads the sources' watermarks and
  writes to every partition the ticks the clock's time has passed (``streams/live/clock.py``).

Faust internals this module relies on are pinned by ``tests/test_faust_contract.py``, so an upgrade
that changes them fails there, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

import faust
from aiohttp import web

from infra.kafka import ssl_context
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import encode_message
from streams.core.policy import PolicyBook
from streams.live.clock import LiveClock, WatermarkFeed
from streams.live.outbox import Outbox
from streams.live.partition_store import Write, owning_partition, partition_of
from streams.live.processor import Funnel, Outgoing, RulesProcessor, WorkerStatus


def faust_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` for the configured security protocol (None for PLAINTEXT)."""
    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username, password=password, ssl_context=context, mechanism=settings.sasl_mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


FetchHandler = Callable[[dict[int, list[Any]]], Awaitable[None]]


def _with_consumer(app: faust.App, wait_ms: int, whole_fetches: dict[str, FetchHandler]) -> None:
    """The worker's consumer: ``wait_ms`` as its fetch wait (Faust fixes it at 1.5 s), and the topics
    of ``whole_fetches`` taken a fetch at a time instead of a message at a time.

    A broker answers a waiting fetch as soon as records arrive -- except the embedded Tansu, which
    holds it for about half the wait: with Faust's 1.5 s every hop of the pipeline took 0.75 s there.

    Faust hands every record to its streams one by one: a message object, the conductor's dispatch,
    ``wait_first`` (two tasks) in the fetcher, an event object, a stream step and an ack: 150-200 µs
    of CPU a record on the 2-core machine (BENCHMARKS.md), as much as the rules spend. A topic in
    ``whole_fetches`` skips all of that: its records of one fetch (aiokafka's ``ConsumerRecord``, by
    partition, in offset order) go to its handler, which returns once everything they caused is
    durable; then they are acknowledged as Faust's streams acknowledge messages, so Faust's commit
    loop (every ``broker_commit_interval`` and after ``broker_commit_every`` acks) commits them and
    nothing else. Other topics' records (none in the worker today) would go on through Faust as
    before. A revocation (``wait_empty``) waits for the fetch being handled, as it waits for the
    events Faust's streams hold.
    """
    from faust.transport.drivers import aiokafka as driver
    from faust.types import TP
    from faust.types.tuples import ack_lock

    class ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
            consumer = super()._create_consumer(loop)
            consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts
            return consumer

    class Consumer(driver.Consumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._idle = asyncio.Event()  # no fetch of a whole-fetch topic is being handled
            self._idle.set()

        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
            records, active = await super()._wait_next_records(timeout)
            if not records or self.should_stop:
                return records, active
            taken = {tp: records.pop(tp) for tp in [tp for tp in records if tp.topic in whole_fetches]}
            if not taken:
                return records, active
            if not self.flow_active or self.app.rebalancing:
                # Fetched as the partitions were being revoked: as Faust's getmany does then, back to
                # the committed offsets (the next owner, or this worker after the rebalance, reads them).
                await self.perform_seek()
                return records, active
            if active is not None:
                taken = {tp: rs for tp, rs in taken.items() if tp in active or tp in self._buffered_partitions}
            await self._take_whole(taken)
            if self._commit_every is not None and self._n_acked >= self._commit_every:  # type: ignore[has-type]
                self._n_acked = 0
                await self.commit()
            return records, active

        async def _take_whole(self, taken: dict[Any, list[Any]]) -> None:
            by_topic: dict[str, dict[int, list[Any]]] = {}
            for tp, fetched in taken.items():
                read = self._read_offset[tp]
                if read is not None and fetched and fetched[0].offset < read:
                    fetched = [record for record in fetched if record.offset >= read]  # as Faust drops them
                if fetched:
                    by_topic.setdefault(tp.topic, {})[tp.partition] = fetched
            if not by_topic:
                return
            self._idle.clear()
            try:
                for topic, by_partition in by_topic.items():
                    await whole_fetches[topic](by_partition)
            finally:
                self._idle.set()
            inbound = self.app.monitor.stream_inbound_time
            now = time.monotonic()
            for topic, by_partition in by_topic.items():
                for partition, fetched in by_partition.items():
                    tp = TP(topic, partition)
                    await self._acknowledge(tp, fetched)
                    inbound[tp] = now

        async def _acknowledge(self, tp: Any, fetched: list[Any]) -> None:
            """What Faust's fetcher (gaps in the offsets) and ``Consumer.ack`` do for each message."""
            read = self._read_offset[tp]
            committed = self._committed_offset[tp]
            acked, index = self._acked[tp], self._acked_index[tp]
            count = 0
            for record in fetched:
                offset = record.offset
                if read and offset - read > 1:
                    await self._add_gap(tp, read + 1, offset)
                read = offset
                with ack_lock:
                    if (committed is None or offset >= committed) and offset not in index:
                        index.add(offset)
                        acked.append(offset)
                        count += 1
            self._n_acked += count
            self._read_offset[tp] = read

        async def wait_empty(self) -> None:
            await self._idle.wait()
            await super().wait_empty()

    app.transport.Consumer = Consumer


class TableLocalData:
    """One partition of the Faust table's local store (RocksDB or memory): what ``PartitionStore``
    reads, plus the writes the adapter applies after the changelog has acknowledged them."""

    def __init__(self, table: Any, partition: int, partitions: int) -> None:
        from faust.stores.rocksdb import Store as RocksDBStore

        self.store = table.data
        self.partition = partition
        self.partitions = partitions
        self.rocksdb = isinstance(self.store, RocksDBStore)
        # The memory store keeps every partition in one dict: this partition's keys are found once
        # (deciding every key's partition on every sweep cost more than the sweep) and then kept up to
        # date here, the only writer of this partition while the processor that owns it lives.
        self._keys: set[bytes] | None = None

    def _db(self) -> Any:
        return self.store._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        value = self._db().get(key) if self.rocksdb else self.store.data.get(key)
        return None if value is None else bytes(value)

    def items(self, start: bytes = b"", stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
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
            self._keys = {key for key in self.store.data if owning_partition(key, self.partitions) == self.partition}
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


class PersonsTable:
    """The persons table's partitions as the processors' stores, and the changelog-first persistence."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        self.changelog: str = table.changelog_topic.get_topic_name()

    def local(self, partition: int) -> TableLocalData:
        return TableLocalData(self.table, partition, self.partitions)

    async def persist(self, local: TableLocalData, writes: list[Write], applied: Write | None) -> None:
        """Changelog first (acknowledged), then the local store.

        The records go straight to the changelog topic in record batches (``streams.live.outbox``)
        rather than through ``Table.send_changelog``, whose per-record futures and buffer cost more
        than the rules do; the records, their partition and the store's persisted offset are what
        Faust's own path gives.

        The batch ends with one record written alone after the rest is acknowledged: the log offset
        this partition's state now reflects. The changelog's last batch is then a single record, so
        its end is never hidden by a broker that reports a batch's base offset as the end (the
        embedded Tansu does), and a worker taking the partition over recovers it whole.
        """
        if not writes or applied is None:
            return
        producer = self.table.app.producer
        outbox = Outbox(producer._ensure_producer())
        for key, value in writes:
            await outbox.add(self.changelog, local.partition, key, value)
        await outbox.flush()
        sent = await (await producer.send(self.changelog, applied[0], applied[1], local.partition, None, None))
        for key, value in [*writes, applied]:
            local.write(key, value)
        # What Faust's changelog callback does: on restart, recovery resumes after this offset.
        self.table.data.set_persisted_offset(sent.topic_partition, sent.offset)


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
        broker_max_poll_records=settings.batch_size,  # a fetch of the unified log is one batch of the rules
        processing_guarantee="at_least_once",
        table_cleanup_interval=3600.0,
        table_standby_replicas=settings.standby_replicas,
        recovery_consistency_check=settings.recovery_consistency_check,
    )
    # Each batch sends its state changes to the changelog at once; Faust's buffer stalls at 100.
    app.producer.buffer.max_messages = max(10_000, 4 * settings.batch_size)
    status = WorkerStatus()
    app.status = status
    raw = {"key_type": bytes, "value_type": bytes, "partitions": settings.partitions}
    source_topics = app.topic(*topics.sources.values(), **raw)
    events_topic = app.topic(topics.events, **raw)
    persons = PersonsTable(
        app.Table("persons", key_type=bytes, value_type=bytes, partitions=settings.partitions), settings.partitions
    )
    funnel_processor = Funnel(topics, status)
    processors: dict[int, tuple[RulesProcessor, TableLocalData]] = {}

    async def send(message: Outgoing) -> Awaitable[Any]:
        future: Awaitable[Any] = await app.producer.send(
            message.topic, message.key, message.value, message.partition, None, list(message.headers) or None
        )
        return future

    def processor_for(partition: int) -> tuple[RulesProcessor, TableLocalData]:
        if partition not in processors:
            local = persons.local(partition)
            processors[partition] = (RulesProcessor(policies, topics, partition, local, status), local)
        return processors[partition]

    async def funnel(topic: str, fetched: dict[int, list[Any]]) -> None:
        """A fetch of one agency topic, by partition: each record checked and forwarded unchanged to the
        unified log (record batches, each to the partition the producer's partitioner gives its key)
        or a dead letter; returns once the broker has acknowledged them all."""
        outbox = Outbox(app.producer._ensure_producer())
        pending = []  # dead letters
        route, events, partitions = funnel_processor.route, topics.events, settings.partitions
        for partition, records in fetched.items():
            for record in records:
                message = route(topic, partition, record.offset, record.value)
                if message.topic == events and message.key is not None:
                    await outbox.add(events, partition_of(message.key, partitions), message.key, message.value)
                else:
                    pending.append(await send(message))
        await outbox.flush()
        await asyncio.gather(*pending)

    async def rules(fetched: dict[int, list[Any]]) -> None:
        """A fetch of the unified log, by partition: each partition's records through its processor, then
        everything they caused made durable (``_with_consumer`` acknowledges them after that)."""
        outbox = Outbox(app.producer._ensure_producer())
        pending = []  # dead letters, keyed sends
        outputs = []
        for partition, records in fetched.items():
            processor, local = processor_for(partition)
            output = processor.process([(record.offset, record.value) for record in records])
            for message in output.messages:
                if message.partition is None:
                    pending.append(await send(message))
                else:
                    await outbox.add(message.topic, message.partition, message.key, message.value, message.headers)
            outputs.append((local, output))
        # Alerts and coverage are on their topics before the state that caused them.
        await outbox.flush()
        await asyncio.gather(*pending)
        for local, output in outputs:
            await persons.persist(local, output.table_writes, output.applied)

    # The agency topics and the unified log are read a fetch at a time (``_with_consumer``); Faust still
    # subscribes to them, and assigns their partitions together with the persons table's.
    app.topics.add(source_topics)
    app.topics.add(events_topic)
    whole_fetches: dict[str, FetchHandler] = {
        source: functools.partial(funnel, source) for source in topics.sources.values()
    }
    whole_fetches[topics.events] = rules
    _with_consumer(app, settings.fetch_max_wait_ms, whole_fetches)

    @app.on_partitions_revoked.connect
    async def forget_processors(_app: faust.App, revoked: set[Any], **_: Any) -> None:
        # A partition may come back after another worker advanced it: rebuild from the table then.
        processors.clear()

    @app.on_partitions_assigned.connect
    async def reset_processors(_app: faust.App, assigned: set[Any], **_: Any) -> None:
        processors.clear()

    if settings.clock == "wall":
        clock = LiveClock(
            policies, int(time.time() * 1000), int(settings.tick_interval * 1000), settings.gating,
            int(settings.max_source_silence * 1000),
        )  # fmt: skip
        feed = WatermarkFeed(settings)
        app.clock = clock

        # Every second, so a watermark moves the clock at once; ticks still fall only on their instants.
        @app.timer(interval=min(1.0, settings.tick_interval), on_leader=True)
        async def wall_clock() -> None:
            wall = int(time.time() * 1000)
            for watermark in await feed.read():
                clock.declare(watermark, wall)
            for tick in clock.due(wall):
                value = encode_message(tick)
                ticks = [Outgoing(topics.events, None, value, p) for p in range(settings.partitions)]
                await asyncio.gather(*[await send(tick_message) for tick_message in ticks])
            status.clock_status = clock.status(wall)

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


def run_faust_app(
    app: faust.App,
    loglevel: str,
    loop: asyncio.AbstractEventLoop,
    on_stop_signal: Callable[[int], None] | None = None,
) -> None:
    """Run a Faust app as a worker until interrupted, logging at ``loglevel``; ``on_stop_signal`` is
    told of SIGTERM and SIGINT as they arrive, even while the event loop is busy.

    Without its terminal spinner: the spinner sets the root logger to DEBUG so it can spin on every
    record, and then every send of every message builds a debug log record (about 5 % of the worker's time).
    """
    from faust.worker import Worker

    class QuietWorker(Worker):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Instead of the spinner's handler; aiokafka warns about every retry it then makes.
            logging.getLogger("aiokafka").setLevel(logging.ERROR)

        def install_signal_handlers(self) -> None:
            super().install_signal_handlers()
            if on_stop_signal is None:
                return

            # The loop still runs Faust's graceful stop (asyncio's wakeup fd tells it of the signal);
            # this Python-level handler runs in the main thread at once, however busy the loop is.
            def told(number: int, _frame: FrameType | None) -> None:
                on_stop_signal(number)

            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, told)

    worker = QuietWorker(app, loglevel=loglevel, loop=loop, quiet=True, override_logging=True)
    worker.spinner = None
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
