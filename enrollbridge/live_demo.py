"""The live demonstration: embedded broker, a worker, a Liuzhou season (with the seasons before it, for
a year with continuity rules) streamed in event-time order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from connectors.identity import Secret
from enrollbridge.dashboard import new_token
from enrollbridge.demo import DEMO_POOL, DEMO_YEAR, prepare_season
from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker, free_port
from infra.readback import read_topic, wait_until_processed
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message
from schemas.models import AlertRecord
from schemas.times import MS_PER_DAY, parse_instant, start_of_local_day
from streams.core.policy import PolicyBook, load_policies
from streams.core.summary import AlertTally
from streams.replay import MergedLog


def start_worker(settings: Settings, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``enrollbridge worker`` in its own process, configured through the environment."""
    return start_process("worker", settings, log, extra_env)


def start_process(
    command: str,
    settings: Settings,
    log: Path,
    extra_env: dict[str, str] | None = None,
    arguments: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """An ``enrollbridge`` command in its own process, configured through the environment."""
    env = {**os.environ, **settings.as_environment(), **(extra_env or {})}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "enrollbridge", command, *arguments], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_processes(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        if process.poll() is None:
            process.kill()


def run_live_demo(students: int, seed: int, out: Path, web_port: int | None, stay: bool, year: int = DEMO_YEAR) -> None:
    secret = Secret.from_environment()
    out.mkdir(parents=True, exist_ok=True)
    # The season first: the worker runs with its policy file (the years it spans).
    manifest, event_files = prepare_season(out, students, seed, secret, load_policies(), year)
    policy_file = out / manifest["policy"]
    with EmbeddedBroker(log_file=out / "broker.log") as broker:
        click.echo(f"started the embedded Kafka-compatible broker (Tansu, memory only) at {broker.bootstrap_servers}")
        settings = Settings(
            bootstrap_servers=broker.bootstrap_servers, store="memory", store_dir=out / "worker-data", clock="off",
            web_port=free_port(), session_timeout=6.0, batch_seconds=0.02, fetch_max_wait_ms=20,
            recovery_consistency_check=False, dashboard_port=web_port or free_port(),
            dashboard_token=SecretStr(new_token()), policy_file=policy_file,
        )  # fmt: skip
        asyncio.run(ensure_topics(settings))
        processes = [start_worker(settings, out / "worker.log")]
        click.echo(f"worker: status page http://{settings.web_host}:{settings.web_port}/ (log in {out / 'worker.log'})")
        year_shown = ("--pool", DEMO_POOL, "--year", str(year))
        processes.append(start_process("dashboard", settings, out / "dashboard.log", arguments=year_shown))
        assert settings.dashboard_token is not None
        login = f"http://{settings.dashboard_host}:{settings.dashboard_port}/login?token="
        login += settings.dashboard_token.get_secret_value()
        click.echo(f"dashboard: {login}")
        if settings.pg_dsn is not None:  # the user's PostgreSQL, if configured: the sink fills it too
            processes.append(start_process("sink", settings, out / "sink.log"))
            click.echo(f"sink: alerts and coverage into PostgreSQL schema {settings.pg_schema} (log in sink.log)")
        try:
            _season(settings, out, manifest, event_files, load_policies(policy_file), year)
            if stay:
                click.echo(f"dashboard: {login}  (Ctrl-C to stop)")
                with contextlib.suppress(KeyboardInterrupt):
                    while all(process.poll() is None for process in processes):
                        time.sleep(1)
        finally:
            stop_processes(*processes)


def _season(
    settings: Settings, out: Path, manifest: dict[str, Any], event_files: list[Path], policies: PolicyBook, year: int
) -> None:
    until = parse_instant(manifest["until"])
    merged = MergedLog(event_files)
    policy = policies.get(DEMO_POOL, year)
    assert policy is not None
    # Daily ticks from a week before the (last) collection period, the earlier seasons' checkpoints
    # before that: what a live clock would have written.
    since = start_of_local_day(policy.collection_start - 7)
    ticks = merged.tick_times(policies, until, every=MS_PER_DAY, since=since)
    click.echo(f"3/3 streaming {merged.count} events in event-time order with {len(ticks)} daily ticks to the worker")
    summary = asyncio.run(_stream_and_watch(settings, merged, ticks, until)).render()
    click.echo(summary)
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")


async def _stream_and_watch(settings: Settings, merged: MergedLog, ticks: list[int], until: int) -> AlertTally:
    from enrollbridge.season_source import publish_season

    tally = AlertTally()
    topics = Topics(settings.topic_prefix)
    done = asyncio.Event()

    async def watch_alerts() -> None:
        from aiokafka import AIOKafkaConsumer

        from infra.kafka import aiokafka_options, start_client

        consumer = AIOKafkaConsumer(topics.alerts, **aiokafka_options(settings), auto_offset_reset="earliest")
        await start_client(consumer, settings)
        try:
            while not done.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        alert = decode_message(record.value, ("AlertRecord",))
                        assert isinstance(alert, AlertRecord)
                        tally.add(alert)
        finally:
            await consumer.stop()

    watcher = asyncio.create_task(watch_alerts())

    def show(bar: object) -> None:
        bar.set_postfix_str(f"{len(tally.latest)} alerts")  # type: ignore[attr-defined]

    published = await publish_season(settings, merged, ticks, until, on_progress=show)
    await wait_until_processed(settings, settings.app_id, published.log_ends, topics.events)
    done.set()
    await watcher
    # Read the alerts topic once more from the start: the watcher may have stopped a little early.
    final = AlertTally()
    async for record in read_topic(settings, topics.alerts):
        alert = decode_message(record.value, ("AlertRecord",))
        assert isinstance(alert, AlertRecord)
        final.add(alert)
    click.echo(
        f"streamed {published.events} events and {published.ticks} ticks in {published.seconds:.1f}s "
        f"({published.barriers} waits for the log to catch up)"
    )
    return final
