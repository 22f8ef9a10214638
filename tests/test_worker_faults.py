"""A worker whose broker goes away says so in one line and exits; SIGTERM stops a worker within 10 s,
under load and with its broker gone (real workers, real brokers, real signals)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from enrollbridge.live_demo import start_worker
from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker, free_port, wait_for_http
from infra.kafka import aiokafka_options
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import encode_message
from schemas.models import ClockTick, SourceEvent
from streams.live.partition_store import partition_of
from streams.live.worker import BROKER_LOST_EXIT
from tests.live import Season, live_settings

STOP_LIMIT = 10.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _stop_within(process: subprocess.Popen[bytes], limit: float) -> tuple[float, int]:
    """SIGTERM, then (seconds until the process was gone, its exit code); killed after ``limit`` * 3."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=limit * 3)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return time.monotonic() - started, code


def _wait_until_ready(worker: subprocess.Popen[bytes], log: Path) -> None:
    """Until Faust says the worker is ready (its log level must be info)."""
    deadline = time.monotonic() + 90
    while "[^QuietWorker]: Ready" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline and worker.poll() is None, log.read_text(errors="replace")
        time.sleep(0.2)


def _status(settings: Settings) -> dict[str, object]:
    page = wait_for_http(f"http://127.0.0.1:{settings.web_port}/status.json", timeout=90)
    status: dict[str, object] = orjson.loads(page)
    return status


def test_a_worker_whose_embedded_broker_dies_says_so_in_one_line_and_exits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "BOOTSTRAP" not in k} | {"ENROLLBRIDGE_LOG_LEVEL": "info"}
    port = free_port()
    command = [sys.executable, "-m", "enrollbridge", "worker", "--store", "memory", "--web-port", str(port)]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        _wait_until_ready(worker, tmp_path / "worker.log")
        [broker] = [pid for pid in _children(worker.pid) if b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(broker, signal.SIGKILL)
        killed = time.monotonic()
        code = worker.wait(timeout=30)
        took = time.monotonic() - killed
    finally:
        if worker.poll() is None:
            worker.kill()
    text = (tmp_path / "worker.log").read_text(errors="replace")
    assert code == BROKER_LOST_EXIT, text
    assert took < 10, text
    lines = [line for line in text.splitlines() if "lost the Kafka broker" in line]
    assert len(lines) == 1 and lines[0] == text.splitlines()[-1], text
    assert re.match(r"worker: lost the Kafka broker at 127\.0\.0\.1:\d+ \(the embedded broker has stopped\)", lines[0])
    assert "Traceback" not in text


def test_sigterm_stops_a_worker_whose_broker_is_gone_within_10_s(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        settings = live_settings(broker.bootstrap_servers, tmp_path, store="memory")
        asyncio.run(ensure_topics(settings))
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            _wait_until_ready(worker, tmp_path / "worker.log")
            assert broker._process is not None
            broker._process.kill()  # the broker dies; the worker's clients retry and retry
            time.sleep(1.0)
            took, code = _stop_within(worker, STOP_LIMIT)
        finally:
            if worker.poll() is None:
                worker.kill()
    text = (tmp_path / "worker.log").read_text(errors="replace")
    assert took < STOP_LIMIT, f"{took:.1f} s\n{text[-3000:]}"
    if code != 0:  # the graceful stop did not finish: said in the last line
        assert "did not stop within 6 s of SIGTERM; exiting now" in text.splitlines()[-1], text[-3000:]


def _publish_log(settings: Settings, season: Season) -> int:
    """The season's unified log written straight onto the events topic: a backlog for a worker."""
    from aiokafka import AIOKafkaProducer

    topic = Topics(settings.topic_prefix).events

    async def send() -> int:
        producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all", linger_ms=20)
        await producer.start()
        count = 0
        try:
            for event in season.merged.stream(season.ticks, season.until):
                value = encode_message(event)
                if isinstance(event, ClockTick):
                    for partition in range(settings.partitions):
                        await producer.send(topic, value, partition=partition)
                else:
                    assert isinstance(event, SourceEvent)
                    key = event.person_key.encode()
                    await producer.send(topic, value, key=key, partition=partition_of(key, settings.partitions))
                count += 1
            await producer.flush()
        finally:
            await producer.stop()
        return count

    return asyncio.run(send())


@pytest.mark.kafka
def test_sigterm_stops_a_worker_under_load_within_10_s(tmp_path: Path, kafka_bootstrap: str) -> None:
    season = Season(tmp_path / "season", 2_500, seed=5)
    settings = live_settings(kafka_bootstrap, tmp_path, policy_file=season.policy_file)
    asyncio.run(ensure_topics(settings))
    total = _publish_log(settings, season)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            events = int(str(_status(settings)["events"]))
            if events > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert 0 < events < total, "the worker should be in the middle of its backlog"
        took, _ = _stop_within(worker, STOP_LIMIT)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert took < STOP_LIMIT, f"{took:.1f} s\n{(tmp_path / 'worker.log').read_text(errors='replace')[-3000:]}"


def test_an_embedded_broker_whose_port_was_taken_meanwhile_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between free_port() and the broker binding it, another process (a second test process) took the
    # port: the broker exited at once while the port answered for the other process.
    import socket

    import infra.broker

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    ports = iter([busy])
    monkeypatch.setattr(infra.broker, "free_port", lambda: next(ports, None) or free_port())
    try:
        with EmbeddedBroker(log_file=tmp_path / "tansu.log") as broker:
            assert broker.port != busy and not broker.exited()
            settings = live_settings(broker.bootstrap_servers, tmp_path)
            asyncio.run(ensure_topics(settings))  # a broker that answers Kafka, not the other listener
    finally:
        taken.close()
