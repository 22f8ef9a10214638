"""The live clock follows the sources' watermarks (SPEC section 4), on a real broker with a real worker
and the wall clock on: agencies that deliver at different times do not raise alerts on what has not
been delivered yet, and a silent source stops holding the clock back after ``max_source_silence``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.admin import ensure_topics
from infra.readback import read_topic, wait_until_processed
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message
from schemas.models import AlertRecord, ClockTick, SourceWatermark
from streams.core.policy import load_policies
from streams.replay import replay
from tests.cli import enrollbridge
from tests.live import Season, Workers, alerts, live_settings

pytestmark = pytest.mark.kafka


def _ingest(settings: Settings, season: Season, source: str) -> str:
    """Publish one agency's export, declared complete up to the day it was taken (the season's end): the
    latest record in a roster file is older than that, and an operator says when the export was made."""
    run = enrollbridge(
        "ingest", source, season.folder / f"{source}.csv", "--bootstrap-servers", settings.bootstrap_servers or "",
        "--topic-prefix", settings.topic_prefix, "--partitions", settings.partitions,
        "--complete-through", season.manifest["until"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def _ticks(settings: Settings) -> list[tuple[int, int, ClockTick]]:
    """(partition, offset, tick) of every tick on the unified log."""

    async def read() -> list[tuple[int, int, ClockTick]]:
        found = []
        async for record in read_topic(settings, Topics(settings.topic_prefix).events):
            event = decode_message(record.value, ("ClockTick", "RosterChange", "RegistrationChange", "PaymentChange",
                                                  "HardshipStatusChange"))  # fmt: skip
            if isinstance(event, ClockTick):
                found.append((record.partition, record.offset, event))
        return found

    return asyncio.run(read())


def _wait_for_ticks(settings: Settings, workers: Workers, timeout: float = 90) -> list[tuple[int, int, ClockTick]]:
    """Wait until every partition has a tick and the worker has processed the log up to it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks = _ticks(settings)
        if {partition for partition, _, _ in ticks} == set(range(settings.partitions)):
            ends = {p: max(offset for q, offset, _ in ticks if q == p) + 1 for p in range(settings.partitions)}
            topic = Topics(settings.topic_prefix).events
            asyncio.run(wait_until_processed(settings, settings.app_id, ends, topic))
            return ticks
        time.sleep(1)
    raise AssertionError(f"no ticks on every partition after {timeout}s\n{workers.logs()}")


def _wait_for_clock(workers: Workers, ready: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
    """Wait until the leader's live clock (on its status page) satisfies ``ready``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(workers.status().get("live_clock") or {}):
            return
        time.sleep(0.5)
    raise AssertionError(f"the worker's clock never got ready\n{workers.logs()}")


def _opened(records: list[tuple[int, AlertRecord]] | list[AlertRecord], kind: str) -> set[str]:
    found = set()
    for record in records:
        alert = record[1] if isinstance(record, tuple) else record
        if alert.kind == kind and alert.status == "OPEN":
            found.add(alert.alert_id)
    return found


def test_a_roster_delivered_first_opens_no_more_unenrolled_than_the_replay(
    tmp_path: Path, kafka_bootstrap: str, secret_env: str
) -> None:
    season = Season(tmp_path / "season", 300, seed=8)
    settings = live_settings(kafka_bootstrap, tmp_path, clock="wall", policy_file=season.policy_file)
    asyncio.run(ensure_topics(settings))
    workers = Workers(settings, tmp_path)
    workers.start()
    try:
        _wait_for_clock(workers, lambda clock: clock.get("gating") is not None)
        education = _ingest(settings, season, "education")
        assert "education complete through" in education
        # The leader has read the roster's watermark: a clock on the wall time alone would have ticked
        # by now, with every rostered student still unregistered.
        _wait_for_clock(workers, lambda clock: "education" in clock.get("watermarks", {}))
        time.sleep(2)
        assert _ticks(settings) == [], "the clock must wait for insurance and tax"
        for source in ("insurance", "tax", "hardship"):
            _ingest(settings, season, source)
        ticks = _wait_for_ticks(settings, workers)
    finally:
        workers.stop_all()
    assert all(tick.incomplete is None for _, _, tick in ticks), "every gating source had declared itself complete"
    live = alerts(settings)
    offline: list[AlertRecord] = []
    replay(season.event_files, load_policies(season.folder / "policy.toml"), offline.append, season.until, False)
    assert 0 < len(_opened(live, "UNENROLLED")) <= len(_opened(offline, "UNENROLLED"))
    # The declarations are on their topic, one per ingest, each after its source's records.
    declared = asyncio.run(_watermarks(settings))
    assert sorted(w.source for w in declared) == ["education", "hardship", "insurance", "tax"]


async def _watermarks(settings: Settings) -> list[SourceWatermark]:
    found = []
    async for record in read_topic(settings, Topics(settings.topic_prefix).watermarks):
        watermark = decode_message(record.value, ("SourceWatermark",))
        assert isinstance(watermark, SourceWatermark)
        found.append(watermark)
    return found


def test_a_silent_source_stops_holding_the_clock_and_the_ticks_say_so(
    tmp_path: Path, kafka_bootstrap: str, secret_env: str
) -> None:
    season = Season(tmp_path / "season", 200, seed=9)
    settings = live_settings(
        kafka_bootstrap, tmp_path, clock="wall", max_source_silence=6.0, policy_file=season.policy_file
    )
    asyncio.run(ensure_topics(settings))
    # The roster is declared before the workers start, so it is on the watermarks topic when the leader's
    # clock first reads it: ingested after, a run slower than the silence allowed (a loaded machine)
    # would rightly let education go as well, and the ticks would name it too.
    _ingest(settings, season, "education")
    workers = Workers(settings, tmp_path)
    started = time.monotonic()
    workers.start()
    try:
        ticks = _wait_for_ticks(settings, workers)
    finally:
        workers.stop_all()
    assert time.monotonic() - started >= 6.0
    incomplete = {tick.incomplete for _, _, tick in ticks}
    assert incomplete == {("insurance", "tax")}, "insurance and tax never declared: the ticks name them"
    opened = [alert for _, alert in alerts(settings) if alert.status == "OPEN"]
    assert opened, "the roster's students are unenrolled as far as anyone knows"
    assert {alert.details.incomplete_sources for alert in opened} == {("insurance", "tax")}
