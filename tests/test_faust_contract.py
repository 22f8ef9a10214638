"""What ``streams/live/faust_app.py`` relies on in Faust and aiokafka beyond their documented API.

The adapter reaches into a few internals for speed and for the durability order (README, "The live
pipeline"). A Faust or aiokafka upgrade that changes any of them fails here, by name, rather than as a
worker that silently loses state or stalls. No broker is needed: the stores are opened locally.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.stores import memory, rocksdb
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.worker import Worker

NOWHERE = "kafka://127.0.0.1:9"  # never contacted: nothing here starts the app


def _table(tmp_path: Path, store: str) -> faust.Table:
    app = faust.App(f"pin-{store}", broker=NOWHERE, store=f"{store}://", datadir=str(tmp_path),
                    key_serializer="raw", value_serializer="raw")  # fmt: skip
    return app.Table("persons", key_type=bytes, value_type=bytes, partitions=2)


def test_rocksdb_store_gives_each_partition_its_own_database(tmp_path: Path) -> None:
    table = _table(tmp_path, "rocksdb")
    store = table.data
    assert isinstance(store, rocksdb.Store)
    first, second = store._db_for_partition(0), store._db_for_partition(1)
    first.put(b"a", b"1")
    second.put(b"~b", b"2")
    assert bytes(first.get(b"a")) == b"1" and second.get(b"a") is None
    assert [(bytes(k), bytes(v)) for k, v in second.items(from_key=b"~")] == [(b"~b", b"2")]
    second.delete(b"~b")
    assert second.get(b"~b") is None
    # The adapter skips this key when it scans a partition, and records offsets as Faust's callback does.
    assert isinstance(store.offset_key, bytes)
    changelog = TP(table.changelog_topic.get_topic_name(), 1)
    store.set_persisted_offset(changelog, 42)
    assert store.persisted_offset(changelog) == 42


def test_memory_store_keeps_every_partition_in_one_dict(tmp_path: Path) -> None:
    store = _table(tmp_path, "memory").data
    assert isinstance(store, memory.Store)
    assert isinstance(store.data, dict)  # the adapter finds a partition's keys in it (owning_partition)
    assert callable(store.set_persisted_offset) and callable(store.apply_changelog_batch)


def test_the_producer_send_and_the_underlying_aiokafka_producer() -> None:
    parameters = list(inspect.signature(driver.Producer.send).parameters)
    assert parameters[:7] == ["self", "topic", "key", "value", "partition", "timestamp", "headers"]
    assert callable(driver.Producer._ensure_producer)  # the outbox fills aiokafka record batches itself
    assert callable(AIOKafkaProducer.create_batch) and callable(AIOKafkaProducer.send_batch)


def test_the_consumer_thread_hook_and_the_fetch_wait_attribute() -> None:
    assert callable(driver.AIOKafkaConsumerThread._create_consumer)
    assert callable(driver.Consumer._new_consumer_thread)

    async def fetch_wait() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=1234)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert asyncio.run(fetch_wait()) == 1234


def test_the_worker_logging_hook_and_spinner() -> None:
    assert callable(Worker.on_setup_root_logger)
    # The adapter sets the instance's spinner to None after construction; Faust must still check it.
    assert "spinner" in Worker.__annotations__
    assert "if self.spinner" in inspect.getsource(Worker._on_startup_end_spinner)
    # The adapter adds its own SIGTERM/SIGINT handlers after Faust's (a stop has a deadline).
    assert callable(Worker.install_signal_handlers)


@pytest.mark.parametrize("name", ["SASLCredentials", "SSLCredentials"])
def test_credentials_types_exist(name: str) -> None:
    assert hasattr(faust, name)


def test_the_fetch_the_worker_takes_whole_and_the_bookkeeping_it_acknowledges_in() -> None:
    from faust.app.base import App
    from faust.transport.consumer import Consumer
    from faust.types.tuples import ack_lock

    # Every fetch of Faust's fetcher goes through ``_wait_next_records`` (records by TP, active TPs);
    # the worker takes the unified log's records out of it there.
    assert "await self._wait_next_records(timeout)" in inspect.getsource(Consumer.getmany)
    assert "return records, active_partitions" in inspect.getsource(Consumer._wait_next_records)
    # It acknowledges them as ``Consumer.ack`` does and records gaps as the fetcher does ...
    ack = inspect.getsource(Consumer.ack)
    for name in ("self._acked_index[tp]", "self._acked[tp]", "self._n_acked += 1", "self._committed_offset[tp]"):
        assert name in ack
    assert "await self._add_gap(tp, r_offset + 1, offset)" in inspect.getsource(Consumer._drain_messages)
    assert "self._n_acked >= commit_every" in inspect.getsource(Consumer._drain_messages)
    assert "with ack_lock" in ack and hasattr(ack_lock, "acquire")
    # ... a fetch made as partitions are revoked is given up by seeking back to the committed offsets ...
    assert "await self.perform_seek()" in inspect.getsource(Consumer.getmany)
    # ... and a revocation waits for the fetch in hand through ``wait_empty``, when stream_wait_empty is on.
    assert "await consumer.wait_empty()" in inspect.getsource(App._consumer_wait_empty)
    assert faust.App("pin-wait", broker=NOWHERE).conf.stream_wait_empty is True


def test_the_persons_table_keeps_the_standby_replicas_the_settings_ask_for(tmp_path: Path) -> None:
    """No standby copies by default (each cost a second worker as much as its own rules,
    BENCHMARKS.md); ENROLLBRIDGE_STANDBY_REPLICAS turns them on."""
    from infra.settings import Settings
    from streams.core.policy import load_policies
    from streams.live.faust_app import create_app

    def settings(**more: int) -> Settings:
        return Settings(bootstrap_servers="127.0.0.1:9", store="memory", store_dir=tmp_path, web_port=1, **more)  # type: ignore[arg-type]

    assert create_app(settings(), load_policies()).conf.table_standby_replicas == 0
    for asked in (1, 2):
        assert create_app(settings(standby_replicas=asked), load_policies()).conf.table_standby_replicas == asked
