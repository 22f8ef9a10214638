"""The README's main job: ``enrollbridge demo``, live on the embedded broker and offline, run as a user
runs it, ends with the alert summary of the season's ground truth."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.cli import enrollbridge


def _truth_by_kind(season: Path) -> dict[str, tuple[int, int]]:
    counts: Counter[tuple[str, str]] = Counter()
    for line in (season / "expected_alerts.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        counts[record["kind"], record["status"]] += 1
    kinds = {kind for kind, _ in counts}
    return {kind: (counts[kind, "OPEN"], counts[kind, "RESOLVED"]) for kind in kinds}


def _summary_by_kind(text: str) -> dict[str, tuple[int, int]]:
    rows = re.findall(r"^([A-Z_]+)\s+(\d+)\s+(\d+)$", text, flags=re.MULTILINE)
    return {kind: (int(opened), int(resolved)) for kind, opened, resolved in rows if (opened, resolved) != ("0", "0")}


@pytest.mark.kafka
def test_the_live_demo_streams_a_season_and_summarises_its_ground_truth(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "BOOTSTRAP" not in k and k != "ENROLLBRIDGE_SECRET"}
    run = enrollbridge("demo", "--students", 400, "--out", tmp_path / "season", "--exit", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "embedded Kafka-compatible broker" in run.stdout
    assert re.search(r"status page http://127\.0\.0\.1:\d+/", run.stdout)
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/login\?token=\S{20,}", run.stdout)
    assert re.search(r"streamed \d+ events and \d+ ticks", run.stdout)
    summary = (tmp_path / "season" / "summary.txt").read_text(encoding="utf-8")
    assert _summary_by_kind(summary) == _truth_by_kind(tmp_path / "season")
    assert _summary_by_kind(run.stdout) == _truth_by_kind(tmp_path / "season")


@pytest.mark.kafka
def test_the_live_demo_of_the_current_season_streams_its_history_first(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "BOOTSTRAP" not in k and k != "ENROLLBRIDGE_SECRET"}
    run = enrollbridge("demo", "--year", 2027, "--students", 300, "--out", tmp_path / "season", "--exit", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "柳州市 2027 with the seasons 2025..2026 before it" in run.stdout
    truth = _truth_by_kind(tmp_path / "season")
    assert _summary_by_kind((tmp_path / "season" / "summary.txt").read_text(encoding="utf-8")) == truth
    assert truth["WAITING_PERIOD"][0] > 5


def test_the_offline_demo_summarises_its_ground_truth(tmp_path: Path) -> None:
    run = enrollbridge("demo", "--offline", "--students", 400, "--out", tmp_path / "season")
    assert run.returncode == 0, run.stderr[-3000:]
    assert _summary_by_kind(run.stdout) == _truth_by_kind(tmp_path / "season")


def test_the_offline_demo_of_the_current_season_loads_its_history_first(tmp_path: Path) -> None:
    run = enrollbridge("demo", "--offline", "--year", 2027, "--students", 400, "--out", tmp_path / "season")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "柳州市 2027 with the seasons 2025..2026 before it" in run.stdout
    truth = _truth_by_kind(tmp_path / "season")
    assert _summary_by_kind(run.stdout) == truth and truth["WAITING_PERIOD"][0] > 10
    lapsed = [
        record
        for line in (tmp_path / "season" / "alerts.jsonl").read_bytes().splitlines()
        if (record := orjson.loads(line))["kind"] == "WAITING_PERIOD" and record["details"].get("lapsed_years")
    ]
    assert lapsed and {record["coverage_year"] for record in lapsed} == {2027}
