"""The continuity figures of a season after 2024: the report and the dashboard show, per county, the
students with a waiting period (and of those, after a lapse) and the covered students by consecutive
covered years (1, 2, 3, 4+), equal to counts made straight from the replay's records and to the
season generator's ground truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pytest

from enrollbridge.dashboard import LiveFigures
from enrollbridge.names import region_label
from enrollbridge.report import COLUMNS
from schemas.models import AlertRecord, CoverageRecord
from streams.core.policy import load_policies
from tests.cli import enrollbridge
from tests.live import Season

KEYS = [key for _, _, key in COLUMNS]
BUCKETS = {1: "continuous_1", 2: "continuous_2", 3: "continuous_3"}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Season, list[AlertRecord], list[CoverageRecord]]:
    season = Season(tmp_path_factory.mktemp("continuity"), 900, seed=71, years=(2025, 2027))
    alerts, coverage = season.folder / "alerts.jsonl", season.folder / "coverage.jsonl"
    run = enrollbridge(
        "replay", *season.event_files, "--policy", season.policy_file, "--until", season.manifest["until"],
        "--out", alerts, "--coverage-out", coverage,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return (
        season,
        [AlertRecord.model_validate_json(line) for line in alerts.read_bytes().splitlines()],
        [CoverageRecord.model_validate_json(line) for line in coverage.read_bytes().splitlines()],
    )


def _direct(alerts: list[AlertRecord], coverage: list[CoverageRecord]) -> dict[str, Counter[str]]:
    """Per county, straight from the records: covered students by continuous years, waiting periods."""
    latest = {r.person_key: r for r in coverage if r.pool == "450200" and r.coverage_year == 2027}
    counts: dict[str, Counter[str]] = {}
    for record in latest.values():
        if record.on_roster and record.covered:
            key = BUCKETS.get(record.continuous_years or 0, "continuous_4")
            counts.setdefault(record.county, Counter())[key] += 1
    for alert in {a.alert_id: a for a in alerts}.values():
        if alert.kind == "WAITING_PERIOD" and alert.status == "OPEN" and alert.coverage_year == 2027:
            county = counts.setdefault(alert.details.county, Counter())
            county["waiting"] += 1
            county["waiting_lapsed"] += bool(alert.details.lapsed_years)
    return counts


def test_the_report_shows_waiting_periods_and_years_covered_in_a_row_per_county(
    replayed: tuple[Season, list[AlertRecord], list[CoverageRecord]], tmp_path: Path
) -> None:
    season, alerts, coverage = replayed
    run = enrollbridge(
        "report", "--pool", "450200", "--year", 2027, "--as-of", "2027-03-31", *season.event_files,
        "--policy", season.policy_file, "--out", tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    sheet = openpyxl.load_workbook(tmp_path / "report-450200-2027-2027-03-31.xlsx")["按区县"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][-6:] == ("待遇等待期", "其中断保", "连续参保1年", "连续参保2年", "连续参保3年", "连续参保4年及以上")
    shown: dict[str, dict[str, Any]] = {str(row[0]): dict(zip(KEYS, row, strict=True)) for row in rows[2:]}
    direct = _direct(alerts, coverage)
    for county, expected in direct.items():
        row = shown[region_label(county)]
        for key in ("waiting", "waiting_lapsed", *BUCKETS.values(), "continuous_4"):
            assert row[key] == expected[key], (county, key)
    total = shown["合计 Total"]
    # The whole pool's distribution is the ground truth's (students on a roster at the end, by years covered).
    truth = season.manifest["continuous_years"]
    assert [total[key] for key in (*BUCKETS.values(), "continuous_4")] == [
        truth.get("1", 0),
        truth.get("2", 0),
        truth.get("3", 0),
        sum(n for y, n in truth.items() if int(y) >= 4),
    ]
    assert total["waiting"] == season.manifest["alerts"]["WAITING_PERIOD"]["OPEN"] > total["waiting_lapsed"] > 0
    page = (tmp_path / "report-450200-2027-2027-03-31.html").read_text(encoding="utf-8")
    assert 'id="continuity"' in page and "4年及以上 4+ years" in page


def test_the_dashboard_shows_the_same_continuity_figures(
    replayed: tuple[Season, list[AlertRecord], list[CoverageRecord]],
) -> None:
    season, alerts, coverage = replayed
    policy = load_policies(season.policy_file).get("450200", 2027)
    assert policy is not None
    figures = LiveFigures(policy)
    for record in coverage:
        figures.add(record)
    for alert in alerts:
        figures.add(alert)
    snapshot: dict[str, Any] = orjson.loads(orjson.dumps(figures.snapshot()))
    direct = _direct(alerts, coverage)
    assert snapshot["continuity_buckets"] == ["1", "2", "3", "4+"]
    for group in snapshot["by_county"]:
        expected = direct.get(group["key"], Counter())
        assert [group["continuous"][b] for b in ("1", "2", "3", "4+")] == [
            expected["continuous_1"],
            expected["continuous_2"],
            expected["continuous_3"],
            expected["continuous_4"],
        ]
        assert (group["waiting"], group["waiting_lapsed"]) == (expected["waiting"], expected["waiting_lapsed"])
    assert snapshot["waiting"]["open"] == season.manifest["alerts"]["WAITING_PERIOD"]["OPEN"]
