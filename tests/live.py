"""Running the live pipeline in tests: workers in their own processes, a season streamed through
the connectors, and what ended up on the topics."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from connectors.identity import Secret
from connectors.ingest import ingest_files
from enrollbridge.live_demo import start_worker
from enrollbridge.season_source import Published, publish_season
from enrollbridge.synth.season import SOURCES, SeasonGenerator, season_config
from infra.admin import ensure_topics
from infra.broker import free_port
from infra.readback import read_topic, wait_until_processed
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import JsonLinesWriter, decode_message, event_from_json, write_event_container
from schemas.models import AlertRecord, DeadLetter, Event
from schemas.times import MS_PER_DAY, parse_instant, start_of_local_day
from streams.core.clock import tick_message
from streams.core.policy import PolicyBook, load_policies
from streams.replay import PARTITION_METADATA, MergedLog
from tests.conftest import TEST_SECRET

_NAMES = itertools.count()


def live_settings(bootstrap: str, folder: Path, **changes: Any) -> Settings:
    """Settings for one test: its own topics, consumer group and store, quick to react. The session
    timeout stays at the production default: on a starved 2-core machine a shorter one
    could let the broker evict a live worker, which then made no progress."""
    name = f"t{os.getpid()}x{next(_NAMES)}"
    base = Settings(
        bootstrap_servers=bootstrap, topic_prefix=name, app_id=name, store_dir=folder / "worker-data", clock="off",
        partitions=4, session_timeout=10.0, batch_seconds=0.02, fetch_max_wait_ms=20, web_port=free_port(),
        # Faust's check mistakes Tansu's short end offsets for a corrupt store; the tests may run on Tansu.
        recovery_consistency_check=False, log_level="info",
    )  # fmt: skip
    return base.model_copy(update=changes)


class Season:
    """A generated season read through the connectors into event files, ready to stream."""

    def __init__(
        self,
        folder: Path,
        students: int,
        seed: int,
        policies: PolicyBook | None = None,
        rates: dict[str, float] | None = None,
        years: tuple[int, int] = (2024, 2024),
    ) -> None:
        self.folder = folder
        self.policies = policies or load_policies()
        secret = Secret(TEST_SECRET.encode())
        config = season_config(self.policies, "450200", *years, students, seed, folder)
        config = replace(config, rates=dict(rates or {}))
        policy = config.policy
        self.manifest = SeasonGenerator(config, secret).generate(progress=False)
        self.policy_file = folder / "policy.toml"
        self.event_files = []
        for source in SOURCES:
            path = folder / f"{source}.events.jsonl"
            with JsonLinesWriter(path) as events, JsonLinesWriter(folder / f"{source}.dlq.jsonl") as dead:
                ingest_files(source, [folder / f"{source}.csv"], secret, events.write, dead.write, progress=False)
            self.event_files.append(path)
        self.until = parse_instant(self.manifest["until"])
        self.merged = MergedLog(self.event_files, progress=False)
        # Daily ticks from a week before the (last) collection period; earlier seasons' checkpoints before.
        self.since = start_of_local_day(policy.collection_start - 7)
        self.ticks = self.merged.tick_times(self.policies, self.until, every=MS_PER_DAY, since=self.since)

    def split(self, at: int) -> tuple[MergedLog, MergedLog]:
        """The season's events recorded before ``at`` (its history) and from ``at`` on, as two logs."""
        parts: tuple[list[Path], list[Path]] = ([], [])
        for path in self.event_files:
            lines = path.read_bytes().splitlines()
            for index, name in enumerate(("history", "current")):
                part = self.folder / name / path.name
                part.parent.mkdir(exist_ok=True)
                wanted = [
                    line
                    for line in lines
                    if (event_from_json(orjson.loads(line)).version_time < at) == (index == 0)  # type: ignore[attr-defined]
                ]
                part.write_bytes(b"".join(line + b"\n" for line in wanted))
                parts[index].append(part)
        return MergedLog(parts[0], progress=False), MergedLog(parts[1], progress=False)

    def truth(self) -> dict[str, str]:
        """alert_id -> final status, as the season's ground truth has it."""
        lines = (self.folder / "expected_alerts.jsonl").read_bytes().splitlines()
        return {(r := orjson.loads(line))["alert_id"]: r["status"] for line in lines}


class Workers:
    """Worker processes for one test; all stopped (or killed) at the end."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.web_ports: list[int] = []

    def start(self, store_dir: Path | None = None) -> subprocess.Popen[bytes]:
        number = len(self.processes)
        settings = self.settings.model_copy(
            update={"web_port": free_port(), "store_dir": store_dir or self.folder / f"worker-{number}"}
        )
        process = start_worker(settings, self.folder / f"worker-{number}.log")
        self.processes.append(process)
        self.web_ports.append(settings.web_port)
        return process

    def status(self, number: int = 0) -> dict[str, Any]:
        """A worker's /status.json (empty while it does not answer yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_ports[number]}/status.json", timeout=2) as answer:
                status: dict[str, Any] = orjson.loads(answer.read())
                return status
        except OSError:
            return {}

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("worker-*.log")))


def stream(
    settings: Settings,
    season: Season,
    on_tick: Any = None,
    merged: MergedLog | None = None,
    ticks: list[int] | None = None,
    then_ticks: tuple[int, ...] = (),
) -> Published:
    """Stream the season (or ``merged`` with ``ticks``), then write ``then_ticks`` to every partition as
    a live clock that caught up would, and wait until the rules have processed the whole log."""

    async def run() -> Published:
        await ensure_topics(settings)
        published = await publish_season(
            settings, merged or season.merged, season.ticks if ticks is None else ticks, season.until,
            progress=False, on_progress=on_tick,
        )  # fmt: skip
        topics = Topics(settings.topic_prefix)
        if then_ticks:
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
            await producer.start()
            try:
                for moment in then_ticks:
                    for partition in published.log_ends:
                        await producer.send_and_wait(topics.events, tick_message(moment), partition=partition)
                        published.log_ends[partition] += 1
            finally:
                await producer.stop()
        await wait_until_processed(settings, settings.app_id, published.log_ends, topics.events)
        return published

    return asyncio.run(run())


async def _records(settings: Settings, topic: str) -> list[Any]:
    return [record async for record in read_topic(settings, topic)]


def alerts(settings: Settings) -> list[tuple[int, AlertRecord]]:
    """(partition, alert) of every message on the alerts topic, partition by partition in order."""
    records = asyncio.run(_records(settings, Topics(settings.topic_prefix).alerts))
    return [(r.partition, decode_message(r.value, ("AlertRecord",))) for r in records]  # type: ignore[misc]


def dead_letters(settings: Settings) -> list[DeadLetter]:
    records = asyncio.run(_records(settings, Topics(settings.topic_prefix).dead_letters))
    return [decode_message(r.value, ("DeadLetter",)) for r in records]  # type: ignore[misc]


def final_states(records: list[tuple[int, AlertRecord]] | list[AlertRecord]) -> dict[str, str]:
    final: dict[str, str] = {}
    for item in records:
        alert = item[1] if isinstance(item, tuple) else item
        final[alert.alert_id] = alert.status
    return final


def archive_log(settings: Settings, folder: Path) -> list[Path]:
    """The unified log read back from Kafka, one Avro container per partition (tagged with it)."""
    from schemas.codec import LOG_EVENT_NAMES

    records = asyncio.run(_records(settings, Topics(settings.topic_prefix).events))
    paths = []
    for partition, group in itertools.groupby(records, key=lambda r: r.partition):
        events: list[Event] = [decode_message(r.value, LOG_EVENT_NAMES) for r in group]  # type: ignore[misc]
        path = folder / f"log-{partition}.avro"
        with path.open("wb") as out:
            write_event_container(out, events, {PARTITION_METADATA: str(partition)})
        paths.append(path)
    return paths
