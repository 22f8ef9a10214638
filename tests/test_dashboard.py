"""The dashboard in headless Chromium during a streamed season: the numbers shown change as events
arrive and end equal to PostgreSQL's (filled by the sink from the same topics); counties are shown by
name and code, alert kinds and statuses in Chinese; without the token the page refuses. A screenshot
is saved next to the test's files."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from connectors.postgres_sink import PostgresSink
from enrollbridge.history import SinkHistory
from enrollbridge.live_demo import start_process, stop_processes
from enrollbridge.names import KIND_NAMES, STATUS_NAMES, region_label, region_name
from infra.broker import free_port, wait_for_http
from infra.kafka import aiokafka_options
from infra.readback import read_topic
from infra.settings import Settings
from schemas.times import format_instant
from streams.core.rules import KIND_ORDER
from tests.conftest import PG_DSN, TEST_SECRET
from tests.live import Season, Workers, live_settings, stream

pytestmark = pytest.mark.kafka
TOKEN = "test-dashboard-token-0123456789"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("ENROLLBRIDGE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed; .ci/run installs it")
    return found


@dataclass(frozen=True)
class Shown:
    records: int
    on_roster: int
    covered: int
    counties: dict[str, tuple[int, int]]
    open_kinds: dict[str, int]
    page: str
    county_labels: dict[str, str]
    kind_labels: dict[str, tuple[str, str]]


def render(chromium: str, url: str, screenshot: Path | None = None) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--virtual-time-budget=4000", "--window-size=1400,1700"]  # fmt: skip
    if screenshot is not None:
        command.append(f"--screenshot={screenshot}")
    else:
        command.append("--dump-dom")
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def read(chromium: str, login: str) -> Shown:
    page = render(chromium, login)

    def number(element: str) -> int:
        found = re.search(rf'id="{element}"[^>]*>(\d+)<', page)
        assert found, f"no {element} on the page"
        return int(found.group(1))

    county_rows = list(re.finditer(r'<tr id="county-(\d+)"><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td>', page))
    kind_rows = list(re.finditer(r'<tr id="open-([A-Z_]+)"><td>([^<]*)</td><td>([^<]*)</td><td>(\d+)</td>', page))
    return Shown(
        number("records"), number("on-roster"), number("covered"),
        {m.group(1): (int(m.group(3)), int(m.group(4))) for m in county_rows},
        {m.group(1): int(m.group(4)) for m in kind_rows}, page,
        {m.group(1): m.group(2) for m in county_rows},
        {m.group(1): (m.group(2), m.group(3)) for m in kind_rows},
    )  # fmt: skip


def test_the_dashboard_follows_a_season_and_agrees_with_postgresql(
    tmp_path: Path, kafka_bootstrap: str, pg_schema: str, chromium: str
) -> None:
    season = Season(tmp_path / "season", 1_500, seed=61)
    settings = live_settings(
        kafka_bootstrap, tmp_path, dashboard_port=free_port(), dashboard_token=SecretStr(TOKEN),
        pg_dsn=SecretStr(PG_DSN), pg_schema=pg_schema, policy_file=season.policy_file,
    )  # fmt: skip
    workers = Workers(settings, tmp_path)
    workers.start()
    sink = start_process("sink", settings, tmp_path / "sink.log")
    dashboard = start_process("dashboard", settings, tmp_path / "dashboard.log")
    base = f"http://127.0.0.1:{settings.dashboard_port}"
    login = f"{base}/login?token={TOKEN}"
    try:
        wait_for_http(f"{base}/health", timeout=60)
        streaming = threading.Thread(target=stream, args=(settings, season))
        streaming.start()
        seen = []
        while streaming.is_alive():
            seen.append(read(chromium, login))
        streaming.join()
        # The numbers moved while the season streamed.
        assert len({(s.records, s.on_roster, s.covered) for s in seen}) >= 2, [s.records for s in seen]
        expected = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shown = read(chromium, login)
            expected = _postgres(pg_schema)
            if (shown.on_roster, shown.covered, shown.counties, shown.open_kinds) == expected:
                break
            time.sleep(1)
        assert (shown.on_roster, shown.covered, shown.counties, shown.open_kinds) == expected
        assert shown.on_roster > 1000 and sum(shown.open_kinds.values()) > 0
        _names_and_chinese_labels_are_shown(shown)
        # Each source's watermark: the season was streamed in event time, so all four declared the last tick.
        last_tick = format_instant(season.ticks[-1]).replace("T", " ")[:19]
        for source in ("education", "insurance", "tax", "hardship"):
            row = re.search(rf'<tr id="source-{source}"><td>[^<]+</td><td>([^<]+)</td>', shown.page)
            assert row and row.group(1) == last_tick, (source, row and row.group(1), last_tick)
        render(chromium, login, screenshot=tmp_path / "dashboard.png")
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
        # Without the token, nothing.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/figures", timeout=5)
        assert refused.value.code == 401
        page = render(chromium, f"{base}/")
        assert "Login required" in page and 'id="on-roster"' not in page
        assert "Login required" in render(chromium, f"{base}/login?token=wrong-{TOKEN}")
    finally:
        stop_processes(sink, dashboard)
        workers.stop_all()
    _no_personal_data_or_secrets_anywhere(settings, season, tmp_path, pg_schema)


def _names_and_chinese_labels_are_shown(shown: Shown) -> None:
    """Counties read as 柳城县 450222, kinds and statuses in Chinese (English beside the kind), and no
    bare enum symbol in the text a person reads."""
    assert shown.county_labels and all(
        label == region_label(code) == f"{region_name(code)} {code}" for code, label in shown.county_labels.items()
    ), shown.county_labels
    assert "柳城县 450222" in shown.county_labels.values() or "三江侗族自治县 450226" in shown.county_labels.values()
    assert shown.kind_labels == {kind: KIND_NAMES[kind] for kind in KIND_ORDER}
    feed = re.search(r'<tbody id="feed">(.*?)</tbody>', shown.page, re.S)
    assert feed, "no feed on the page"
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", feed.group(1))]
    assert cells and all(len(row) == 5 for row in cells)
    assert {row[1] for row in cells} <= {zh for zh, _ in KIND_NAMES.values()}
    assert {row[2] for row in cells} <= {zh for zh, _ in STATUS_NAMES.values()}
    assert all(row[3] == region_label(row[3].rsplit(" ", 1)[-1]) for row in cells)
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", shown.page, flags=re.S))
    assert not any(re.search(rf"\b{kind}\b", visible) for kind in KIND_ORDER)
    assert not re.search(r"\b(OPEN|RESOLVED|PRIMARY|KINDERGARTEN|HIGHER_EDUCATION)\b", visible)


def _no_personal_data_or_secrets_anywhere(settings: Settings, season: Season, folder: Path, schema: str) -> None:
    """Every topic of the run (Faust's internal ones included), every log and output file, and every
    PostgreSQL table hold no raw identity number, no name and no secret."""
    people: list[dict[str, str]] = []
    for source in ("education", "tax"):  # the exports that carry names
        with (season.folder / f"{source}.csv").open(encoding="utf-8-sig", newline="") as rows:
            people += list(csv.DictReader(rows))
    identities = {row["身份证号"] for row in people if len(row["身份证号"]) >= 15}
    names = {row["姓名"] for row in people if len(row["姓名"]) >= 2}
    secrets = {TEST_SECRET, TOKEN, PG_DSN.split("@")[0]}
    assert len(identities) > 1000 and len(names) > 100

    def clean(where: str, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        for value in identities | names | secrets:
            assert value not in text, f"{where} holds personal data or a secret"

    async def topics() -> dict[str, bytes]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**aiokafka_options(settings))
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith((settings.topic_prefix, settings.app_id))]
        finally:
            await admin.close()
        found = {}
        for name in names:
            found[name] = b"".join([(r.key or b"") + (r.value or b"") async for r in read_topic(settings, name)])
        return found

    scanned = asyncio.run(topics())
    assert any(name.endswith("-changelog") for name in scanned) and len(scanned) >= 8, sorted(scanned)
    for name, data in scanned.items():
        clean(f"topic {name}", data)
    for path in folder.rglob("*"):
        if path.is_file() and season.folder not in path.parents:  # the agency files are the input
            clean(str(path), path.read_bytes())
    with psycopg.connect(PG_DSN) as connection:
        connection.execute(f"SET search_path TO {schema}")
        for table in ("alert_current", "alert_transition", "coverage_current", "coverage_transition"):
            clean(f"table {table}", str(connection.execute(f"SELECT * FROM {table}").fetchall()).encode())


def _postgres(schema: str) -> tuple[int, int, dict[str, tuple[int, int]], dict[str, int]]:
    with PostgresSink(PG_DSN, schema) as sink:
        sink.migrate()
    with SinkHistory(PG_DSN, schema) as history:
        whole = history.figures(2024, "450200", ())
        counties = {row["county"]: (row["on_roster"], row["covered"]) for row in history.figures(2024, "450200")}
    total: dict[str, Any] = whole[0] if whole else {"on_roster": 0, "covered": 0, "open_alerts": {}}
    return total["on_roster"], total["covered"], counties, {k: total["open_alerts"].get(k, 0) for k in KIND_ORDER}
