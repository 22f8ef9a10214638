"""Running the Faust worker, with the embedded broker when no Kafka is configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from streams.core.policy import load_policies

if TYPE_CHECKING:
    import faust


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
    from streams.live.faust_app import create_app

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


def run_faust_app(app: faust.App, loglevel: str, loop: asyncio.AbstractEventLoop) -> None:
    """Run a Faust app as a worker until interrupted, logging at ``loglevel``.

    Without its terminal spinner: the spinner sets the root logger to DEBUG so it can spin on every
    record, and then every send of every message builds a debug log record (about 5 % of the worker's time).
    """
    from faust.worker import Worker

    class QuietWorker(Worker):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Instead of the spinner's handler; aiokafka warns about every retry it then makes.
            logging.getLogger("aiokafka").setLevel(logging.ERROR)

    worker = QuietWorker(app, loglevel=loglevel, loop=loop, quiet=True, override_logging=True)
    worker.spinner = None
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
