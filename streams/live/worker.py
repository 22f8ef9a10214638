"""Running the Faust worker, with the embedded broker when no Kafka is configured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import click

from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from streams.core.policy import load_policies


@contextlib.contextmanager
def kafka_for(settings: Settings, who: str) -> Iterator[Settings]:
    """The settings with bootstrap servers: the configured ones, or a fresh embedded broker (said on the terminal)."""
    if settings.bootstrap_servers:
        yield settings
        return
    with EmbeddedBroker() as broker:
        click.echo(
            f"{who}: no Kafka configured (ENROLLBRIDGE_BOOTSTRAP_SERVERS): started the embedded Kafka-compatible "
            f"broker (Tansu, memory only) at {broker.bootstrap_servers}; it stops when {who} stops",
            err=True,
        )
        # Tansu reports short end offsets, which Faust's recovery check would take for a corrupt store.
        yield settings.model_copy(
            update={"bootstrap_servers": broker.bootstrap_servers, "recovery_consistency_check": False}
        )


def run_worker(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM)."""
    from streams.live.faust_app import create_app, run_faust_app

    policies = load_policies(settings.policy_file)
    with kafka_for(settings, "worker") as settings:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # Faust runs on this loop; topics are created on it first
        loop.run_until_complete(ensure_topics(settings))
        app = create_app(settings, policies)
        click.echo(
            f"worker: app {settings.app_id}, {settings.partitions} partitions, {settings.store} store in "
            f"{settings.store_dir}, clock {settings.clock}, status at http://{settings.web_host}:{settings.web_port}/",
            err=True,
        )
        run_faust_app(app, settings.log_level, loop)
