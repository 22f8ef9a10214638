"""Running the Faust worker, with the embedded broker when no Kafka is configured.

Two promises Faust does not keep by itself, kept here from a thread that does not depend on its
event loop: a worker that loses its broker says so in one line and exits (Faust would retry and log
errors forever), and SIGTERM or SIGINT stops a worker within ``STOP_SECONDS`` (Faust's graceful stop
can wait much longer for a broker that is gone or a batch under way). Leaving abruptly is safe:
processing is at-least-once, so the events since the last commit are processed again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import click

from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from streams.core.policy import load_policies

BROKER_LOST_EXIT = 75  # EX_TEMPFAIL: the broker may come back; a supervisor can start the worker again
STOP_FORCED_EXIT = 143  # as if killed by SIGTERM: the graceful stop did not finish in time
STOP_SECONDS = 6.0  # after SIGTERM/SIGINT, the graceful stop's share of the 10 s a worker may take to stop
BROKER_PATIENCE = 30.0  # seconds without any configured broker answering (the embedded one is watched itself)
PROBE_SECONDS = 0.5


class Guard:
    """Watches the broker (the embedded one's process, or the configured ones' ports) from a thread,
    and bounds how long a stop may take.

    Either way it leaves with one line on stderr, after muting the clients' logging (which would
    otherwise report every failed retry) and stopping the embedded broker if it runs one."""

    def __init__(self, servers: list[str], embedded: EmbeddedBroker | None) -> None:
        self.servers = servers
        self.embedded = embedded
        self.stopping = threading.Event()
        self._leaving = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="broker-guard", daemon=True).start()

    def _answers(self) -> bool:
        for server in self.servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def _watch(self) -> None:
        answered = time.monotonic()
        while not self.stopping.wait(0.1 if self.embedded else PROBE_SECONDS):
            if self.embedded is not None:
                if self.embedded.exited() and not self.stopping.is_set():
                    self._lost("the embedded broker has stopped")
                continue
            if self._answers():
                answered = time.monotonic()
            elif time.monotonic() - answered > BROKER_PATIENCE and not self.stopping.is_set():
                self._lost(f"none answered for {BROKER_PATIENCE:g} s")

    def _lost(self, why: str) -> None:
        self.leave(
            BROKER_LOST_EXIT,
            f"lost the Kafka broker at {','.join(self.servers)} ({why}); exiting with code {BROKER_LOST_EXIT}, "
            "the events since the last commit are processed again at the next start",
        )

    def on_stop_signal(self, number: int) -> None:
        """A stop was asked for: from now on a missing broker is expected, and the stop has a deadline."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        name = signal.Signals(number).name
        timer = threading.Timer(
            STOP_SECONDS,
            self.leave,
            (STOP_FORCED_EXIT, f"did not stop within {STOP_SECONDS:g} s of {name}; exiting now (code "
             f"{STOP_FORCED_EXIT}), the events since the last commit are processed again at the next start"),
        )  # fmt: skip
        timer.daemon = True
        timer.start()

    def leave(self, code: int, line: str) -> None:
        if not self._leaving.acquire(blocking=False):
            return
        logging.disable(logging.CRITICAL)
        with contextlib.suppress(OSError):  # to the descriptor: Faust has put a logger in sys.stderr's place
            os.write(2, f"worker: {line}\n".encode())
        if self.embedded is not None:
            with contextlib.suppress(Exception):
                self.embedded.stop(grace=1.0)  # within the 10 s a stop may take
        os._exit(code)  # the event loop may be stuck in a client's retries: nothing else would return


@contextlib.contextmanager
def kafka_for(settings: Settings, who: str) -> Iterator[tuple[Settings, EmbeddedBroker | None]]:
    """The settings with bootstrap servers: the configured ones, or a fresh embedded broker (said on
    the terminal), which is yielded too."""
    if settings.bootstrap_servers:
        yield settings, None
        return
    with EmbeddedBroker() as broker:
        click.echo(
            f"{who}: no Kafka configured (ENROLLBRIDGE_BOOTSTRAP_SERVERS): started the embedded Kafka-compatible "
            f"broker (Tansu, memory only) at {broker.bootstrap_servers}; it stops when {who} stops",
            err=True,
        )
        # Tansu reports short end offsets, which Faust's recovery check would take for a corrupt store.
        yield (
            settings.model_copy(
                update={"bootstrap_servers": broker.bootstrap_servers, "recovery_consistency_check": False}
            ),
            broker,
        )


def run_worker(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM)."""
    from streams.live.faust_app import create_app, run_faust_app

    policies = load_policies(settings.policy_file)
    with kafka_for(settings, "worker") as (settings, embedded):
        guard = Guard(settings.bootstrap_list, embedded)
        guard.start()
        # Until Faust takes the signals over: a stop asked for during start-up still ends in time.
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda number, _frame: guard.on_stop_signal(number))
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # Faust runs on this loop; topics are created on it first
        loop.run_until_complete(ensure_topics(settings))
        app = create_app(settings, policies)
        click.echo(
            f"worker: app {settings.app_id}, {settings.partitions} partitions, {settings.store} store in "
            f"{settings.store_dir}, clock {settings.clock}, status at http://{settings.web_host}:{settings.web_port}/",
            err=True,
        )
        try:
            run_faust_app(app, settings.log_level, loop, guard.on_stop_signal)
        finally:
            guard.stopping.set()  # stopping the embedded broker next is no loss of it
