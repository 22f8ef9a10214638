"""The monthly county report: figures equal a direct computation from the replay's output, the XLSX
has the expected sheets, the HTML carries its chart, and the sink's history gives the same report --
also after the agencies delivered out of business-time order. Counties are shown by name (GB/T 2260)
and code; the duplicates-cleaned figure equals a count made straight from the agencies' records; the
PDF printed by headless Chromium shows the chart."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pytest

from connectors.postgres_sink import PostgresSink
from enrollbridge.names import region_label
from enrollbridge.report import COLUMNS, build_report
from schemas.codec import write_event_container
from schemas.models import AlertRecord, CoverageRecord, LogEvent
from schemas.times import MS_PER_DAY, parse_date, parse_instant, start_of_local_day
from streams.core.clock import due_ticks, make_tick
from streams.core.watermarks import SourceWatermarks
from streams.replay import PARTITION_METADATA, read_events, replay
from tests.cli import enrollbridge
from tests.conftest import PG_DSN
from tests.live import Season

KEYS = [key for _, _, key in COLUMNS]


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Season:
    return Season(tmp_path_factory.mktemp("report"), 900, seed=51)


def _replay(season: Season, folder: Path, until: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    folder.mkdir(parents=True, exist_ok=True)
    run = enrollbridge(
        "replay", *season.event_files, "--policy", season.folder / "policy.toml", "--until", until,
        "--out", folder / "alerts.jsonl", "--coverage-out", folder / "coverage.jsonl",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return _lines(folder / "alerts.jsonl"), _lines(folder / "coverage.jsonl")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _direct(alerts: list[dict[str, Any]], coverage: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per county, straight from replay output: students on rosters, covered, duplicates, wrong place."""
    latest: dict[str, dict[str, Any]] = {}
    for record in coverage:
        if record["pool"] == "450200" and record["coverage_year"] == 2024:
            latest[record["person_key"]] = record
    figures: dict[str, Counter[str]] = {}
    for record in latest.values():
        if record["on_roster"]:
            figures.setdefault(record["county"], Counter())["on_roster"] += 1
            figures[record["county"]]["covered"] += record["covered"]
    first_open: dict[str, dict[str, Any]] = {}
    status: dict[str, str] = {}
    for alert in alerts:
        if alert["pool"] == "450200" and alert["coverage_year"] == 2024:
            status[alert["alert_id"]] = alert["status"]
            if alert["status"] == "OPEN":
                first_open.setdefault(alert["alert_id"], alert)
    for alert_id, alert in first_open.items():
        if alert["kind"] == "DUPLICATE_ENROLLMENT":
            county = figures.setdefault(alert["details"]["county"], Counter())
            county["duplicates_found"] += 1
            county["duplicates_cleaned"] += status[alert_id] == "RESOLVED"
    for alert in {a["alert_id"]: a for a in alerts}.values():
        if alert["kind"] == "HARDSHIP_WRONG_PLACE" and alert["status"] == "OPEN" and alert["pool"] == "450200":
            figures.setdefault(alert["details"]["county"], Counter())["wrong_place"] += 1
    return {county: dict(counts) for county, counts in figures.items()}


def _sheet_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by county code (the total as 合计 Total); each county is shown as its name and code."""
    workbook = openpyxl.load_workbook(path)
    assert workbook.sheetnames == ["按区县", "说明"]
    rows = list(workbook["按区县"].iter_rows(values_only=True))
    assert rows[0][0] == "区县" and rows[1][0] == "County"
    found = {}
    for row in rows[2:]:
        shown = str(row[0])
        code = shown if shown == "合计 Total" else shown.rsplit(" ", 1)[-1]
        assert shown in ("合计 Total", region_label(code)) and " " in shown, shown  # 柳城县 450222
        found[code] = dict(zip(KEYS, row, strict=True))
    return found


def test_the_report_at_31_october_equals_a_direct_computation(season: Season, tmp_path: Path) -> None:
    run = enrollbridge(
        "report", "--pool", "450200", "--year", 2024, "--as-of", "2023-10-31", *season.event_files,
        "--policy", season.folder / "policy.toml", "--out", tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = _sheet_rows(tmp_path / "report-450200-2024-2023-10-31.xlsx")
    now = _direct(*_replay(season, tmp_path / "now", "2023-11-01T00:00:00+08:00"))
    before = _direct(*_replay(season, tmp_path / "before", "2023-10-01T00:00:00+08:00"))  # checkpoint 30 Sep
    counties = {c for c in rows if c != "合计 Total"}
    assert counties == set(now)
    for county, expected in now.items():
        row = rows[county]
        for key in ("on_roster", "covered", "duplicates_found", "duplicates_cleaned", "wrong_place"):
            assert row[key] == expected.get(key, 0), (county, key)
        if expected.get("on_roster"):
            assert row["rate"] == round(expected["covered"] / expected["on_roster"], 4)
        assert row["covered_change"] == expected.get("covered", 0) - before.get(county, {}).get("covered", 0)
    total = rows["合计 Total"]
    assert total["on_roster"] == sum(c.get("on_roster", 0) for c in now.values())
    assert total["covered"] == sum(c.get("covered", 0) for c in now.values())
    assert sum(c.get("duplicates_found", 0) for c in now.values()) > 0  # the season has some to report
    page = (tmp_path / "report-450200-2024-2023-10-31.html").read_text(encoding="utf-8")
    assert "echarts.init" in page and "https://" not in page.split("<script>")[0]
    assert all(f"<td>{region_label(county)}</td>" in page for county in counties)
    assert "animation: false" in page and "@media print" in page


def test_the_sink_history_gives_the_same_report(season: Season, tmp_path: Path, pg_schema: str) -> None:
    alerts, coverage = _replay(season, tmp_path / "all", season.manifest["until"])
    with PostgresSink(PG_DSN, pg_schema) as sink:
        sink.migrate()
        sink.write(
            [((0, n), AlertRecord.model_validate(a)) for n, a in enumerate(alerts)],
            [((0, n), CoverageRecord.model_validate(c)) for n, c in enumerate(coverage)],
        )
    common: list[str | Path | int] = ["report", "--pool", "450200", "--year", 2024, "--as-of", "2023-12-31"]
    policy: list[str | Path | int] = ["--policy", season.folder / "policy.toml"]
    env = {"ENROLLBRIDGE_PG_DSN": PG_DSN, "ENROLLBRIDGE_PG_SCHEMA": pg_schema}
    from_db = enrollbridge(*common, *policy, "--out", tmp_path / "db", env=env)
    assert from_db.returncode == 0, from_db.stderr
    from_log = enrollbridge(*common, *season.event_files, *policy, "--out", tmp_path / "log")
    assert from_log.returncode == 0, from_log.stderr
    name = "report-450200-2024-2023-12-31.xlsx"
    assert _sheet_rows(tmp_path / "db" / name) == _sheet_rows(tmp_path / "log" / name)
    assert from_db.stdout.splitlines()[0] == from_log.stdout.splitlines()[0]


# -- duplicates cleaned -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cleaning_season(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A season where the insurance bureau cleans many duplicates (a registration cancelled)."""
    folder = tmp_path_factory.mktemp("cleaning")
    env = {"ENROLLBRIDGE_SECRET": "report-test-secret"}
    run = enrollbridge(
        "synth", "--pool", "450200", "--year", 2024, "--students", 1500, "--seed", 7, "--out", folder,
        "--rate", "duplicate_cleaned=0.06", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    for source in ("education", "insurance", "tax", "hardship"):
        run = enrollbridge("ingest", source, folder / f"{source}.csv", "--out", folder / f"{source}.events.jsonl",
                           env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr
    return folder


def _duplicates_straight_from_the_records(folder: Path, until: int) -> dict[str, Counter[str]]:
    """Per county of pool 450200: people who held two or more active registrations for 2024 at some moment
    before ``until`` (found), and of those, the ones down to at most one by then (cleaned: a registration
    was cancelled). The county is the school's while the student is on a roster, else the region of the
    earliest active registration, at the moment the duplicate appeared."""
    events = [
        orjson.loads(line)
        for source in ("education", "insurance")
        for line in (folder / f"{source}.events.jsonl").read_bytes().splitlines()
    ]
    events = sorted(
        (e for e in events if parse_instant(e["occurred_at"]) < until),
        key=lambda e: (parse_instant(e["occurred_at"]), e["type"] != "RosterChange"),
    )
    school_region: dict[str, str] = {}
    registrations: dict[str, dict[str, tuple[bool, int, str]]] = {}
    county_found: dict[str, str] = {}
    for event in events:
        person = event["person_key"]
        if event["type"] == "RosterChange":
            if event["action"] == "ENROLLED":
                school_region[person] = event["school_region"]
            else:
                school_region.pop(person, None)
            continue
        if event["coverage_year"] != 2024:
            continue
        held = registrations.setdefault(person, {})
        held[event["enrollment_ref"]] = (event["action"] == "REGISTERED", parse_instant(event["occurred_at"]),
                                         event["region"])  # fmt: skip
        active = sorted((at, ref, region) for ref, (on, at, region) in held.items() if on)
        if len(active) >= 2 and person not in county_found:
            county_found[person] = school_region.get(person) or active[0][2]
    counts: dict[str, Counter[str]] = {}
    for person, county in county_found.items():
        if county[:4] == "4502":
            still = sum(1 for on, _, _ in registrations[person].values() if on)
            counts.setdefault(county, Counter())["found"] += 1
            counts[county]["cleaned"] += still <= 1
    return counts


@pytest.mark.parametrize("as_of", ["2023-11-30", "2024-03-31"])
def test_duplicates_cleaned_equals_a_count_straight_from_the_records(
    cleaning_season: Path, tmp_path: Path, as_of: str
) -> None:
    run = enrollbridge(
        "report", "--pool", "450200", "--year", 2024, "--as-of", as_of,
        *sorted(cleaning_season.glob("*.events.jsonl")), "--policy", cleaning_season / "policy.toml", "--out", tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = _sheet_rows(tmp_path / f"report-450200-2024-{as_of}.xlsx")
    direct = _duplicates_straight_from_the_records(cleaning_season, start_of_local_day(parse_date(as_of) + 1))
    for county, row in rows.items():
        if county != "合计 Total":
            counted = direct.get(county, Counter())
            assert (row["duplicates_found"], row["duplicates_cleaned"]) == (counted["found"], counted["cleaned"]), (
                county
            )
    total = rows["合计 Total"]
    assert total["duplicates_cleaned"] == sum(c["cleaned"] for c in direct.values()) > 0
    assert total["duplicates_found"] == sum(c["found"] for c in direct.values()) > total["duplicates_cleaned"]


def test_synth_cleans_duplicates_and_its_ground_truth_says_so(cleaning_season: Path) -> None:
    manifest = orjson.loads((cleaning_season / "manifest.json").read_bytes())
    assert manifest["profiles"]["duplicate_cleaned"] > 50
    assert manifest["alerts"]["DUPLICATE_ENROLLMENT"]["RESOLVED"] == manifest["profiles"]["duplicate_cleaned"]
    cancelled = [line for line in (cleaning_season / "insurance.events.jsonl").read_bytes().splitlines()
                 if b'"action":"CANCELLED"' in line]  # fmt: skip
    assert len({orjson.loads(line)["event_id"] for line in cancelled}) == manifest["profiles"]["duplicate_cleaned"]


# -- printing -----------------------------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("ENROLLBRIDGE_REQUIRE_BROWSER"):
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's {package})")
        pytest.skip(f"{name} is not installed ({package}); .ci/run installs it")
    return found


def _blue_pixels(ppm: bytes, top: float, bottom: float) -> tuple[int, int]:
    """Pixels of ECharts' first series colour (a saturated blue) between two heights (shares of the
    page), and the page width: the bars of the chart, absent when the chart was not drawn."""
    magic, width, height, depth, pixels = ppm.split(maxsplit=4)
    assert magic == b"P6" and depth == b"255"
    w, h = int(width), int(height)
    count = 0
    for y in range(int(h * top), int(h * bottom)):
        row = pixels[y * w * 3 : (y + 1) * w * 3]
        for x in range(0, w * 3, 3):
            r, g, b = row[x], row[x + 1], row[x + 2]
            count += b > 150 and b - r > 60 and b - g > 30
    return count, w


def test_the_pdf_shows_the_chart(season: Season, tmp_path: Path) -> None:
    _tool("chromium", "chromium")
    pdftoppm = _tool("pdftoppm", "poppler-utils")
    run = enrollbridge(
        "report", "--pool", "450200", "--year", 2024, "--as-of", "2023-11-30", *season.event_files,
        "--policy", season.folder / "policy.toml", "--out", tmp_path, "--pdf",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    pdf = tmp_path / "report-450200-2024-2023-11-30.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    done = subprocess.run([pdftoppm, "-r", "50", "-f", "1", "-l", "1", pdf, tmp_path / "page"], capture_output=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = next(tmp_path.glob("page*.ppm")).read_bytes()
    chart, width = _blue_pixels(page, 0.08, 0.55)  # the chart sits under the title, above the table
    assert width > 500  # landscape A4 at 50 dpi is 585 pixels wide
    assert chart > 400, f"only {chart} pixels of bars in the chart area"
    assert _blue_pixels(page, 0.60, 1.0)[0] < chart / 10  # and the table below has no bars


def test_report_pdf_without_chromium_says_so_in_one_line(season: Season, tmp_path: Path) -> None:
    run = enrollbridge(
        "report", "--pool", "450200", "--year", 2024, "--as-of", "2023-11-30", *season.event_files,
        "--policy", season.folder / "policy.toml", "--out", tmp_path, "--pdf",
        env={"ENROLLBRIDGE_CHROMIUM": "no-such-chromium"},
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "needs headless Chromium" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "report-450200-2024-2023-11-30.html").exists()
    assert (tmp_path / "report-450200-2024-2023-11-30.xlsx").exists()


@pytest.mark.parametrize("as_of", ["2023-10-31\n", " 2023-10-31", "20231031", "2023-W44-2"])
def test_the_report_is_named_by_its_date_however_the_date_was_typed(tmp_path: Path, as_of: str) -> None:
    # The name used to be made of the text given: a line break or a space in it, or another of the
    # ISO 8601 forms of the same day, named files a person could not find (or type).
    events = tmp_path / "events.jsonl"
    events.write_text("")
    out = tmp_path / "out"
    run = enrollbridge("report", "--pool", "450200", "--year", 2024, "--as-of", as_of, events, "--out", out)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "report-450200-2024-2023-10-31.html",
        "report-450200-2024-2023-10-31.xlsx",
    ]
    assert "as of 2023-10-31:" in run.stdout


def _delivered(season: Season, order: tuple[str, ...]) -> list[LogEvent]:
    """The season as the worker would log it when the agencies deliver one after the other, each its own
    records in the order it recorded them, with the clock of their watermarks: no tick before every
    gating source has declared, then the ticks the clock has passed."""
    by_source = {path.name.split(".")[0]: [event for _, event in read_events(path)] for path in season.event_files}
    marks, log = SourceWatermarks(started_at=0), []
    last = season.ticks[0] - MS_PER_DAY
    for wall, source in enumerate(order, start=1):
        records = sorted(by_source[source], key=lambda e: (e.version_time, e.event_id))  # type: ignore[union-attr]
        log.extend(records)
        marks.declare(source, max(e.version_time for e in records), wall)  # type: ignore[union-attr]
        now = marks.clock_time(wall * 10**13)
        for moment in (
            due_ticks(last, min(now, season.until), MS_PER_DAY, season.policies.checkpoint_tick_times()) if now else ()
        ):
            log.append(make_tick(moment, marks.incomplete(moment)))
            last = moment
    return log


def _replayed_log(season: Season, log: list[LogEvent], folder: Path) -> tuple[list[AlertRecord], list[CoverageRecord]]:
    """The delivered log archived and replayed in its order, as the worker processed it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log.avro"
    with path.open("wb") as out:
        write_event_container(out, log, {PARTITION_METADATA: "0"})
    alerts: list[AlertRecord] = []
    coverage: list[CoverageRecord] = []
    assert replay([path], season.policies, alerts.append, progress=False, on_coverage=coverage.append).mode == "log"
    return alerts, coverage


@pytest.mark.slow  # 24 replays of the season's log: every order of the four agencies
def test_figures_do_not_depend_on_which_agency_delivered_first(season: Season, tmp_path: Path) -> None:
    policy = season.policies.get("450200", 2024)
    assert policy is not None
    alerts: list[AlertRecord] = []
    coverage: list[CoverageRecord] = []
    replay(season.event_files, season.policies, alerts.append, progress=False, on_coverage=coverage.append)
    from_files = [build_report(policy, day, coverage, alerts) for day in policy.checkpoints]
    for order in itertools.permutations(("education", "insurance", "tax", "hardship")):
        log = _delivered(season, order)
        live_alerts, live_coverage = _replayed_log(season, log, tmp_path / "-".join(order))
        assert [build_report(policy, day, live_coverage, live_alerts) for day in policy.checkpoints] == from_files, (
            order
        )


def test_after_an_out_of_order_delivery_the_sink_gives_the_report_of_the_files(
    season: Season, tmp_path: Path, pg_schema: str
) -> None:
    """The roster first, the payments before the registrations they follow, the hardship statuses before
    both; the whole history through the sink; the report as of each month equals the one from the files."""
    log = _delivered(season, ("education", "tax", "hardship", "insurance"))
    alerts, coverage = _replayed_log(season, log, tmp_path / "log")
    with PostgresSink(PG_DSN, pg_schema) as sink:
        sink.migrate()
        sink.write(
            [((0, n), alert) for n, alert in enumerate(alerts)], [((0, n), record) for n, record in enumerate(coverage)]
        )
    policy: list[str | Path | int] = ["--policy", season.folder / "policy.toml"]
    env = {"ENROLLBRIDGE_PG_DSN": PG_DSN, "ENROLLBRIDGE_PG_SCHEMA": pg_schema}
    for day in ("2023-10-31", "2023-12-31"):
        common: list[str | Path | int] = ["report", "--pool", "450200", "--year", 2024, "--as-of", day]
        from_db = enrollbridge(*common, *policy, "--out", tmp_path / "db", env=env)
        assert from_db.returncode == 0, from_db.stderr
        from_files = enrollbridge(*common, *season.event_files, *policy, "--out", tmp_path / "files")
        assert from_files.returncode == 0, from_files.stderr
        name = f"report-450200-2024-{day}.xlsx"
        assert _sheet_rows(tmp_path / "db" / name) == _sheet_rows(tmp_path / "files" / name)
        assert (
            sum(
                row["duplicates_found"]
                for county, row in _sheet_rows(tmp_path / "db" / name).items()
                if county != "合计 Total"
            )
            > 0
        )
