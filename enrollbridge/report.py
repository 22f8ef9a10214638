"""The monthly county report (按月通报): coverage per county as of a date, its change since the
previous checkpoint, duplicates found and cleaned, hardship students registered in the wrong place;
the same figures for the whole pool. Written as a self-contained HTML page (chart by ECharts,
inlined: no internet needed) and as XLSX.

Figures come from ``streams.core.figures`` over the engine's output up to the report date: either a
replay of the log run here, or the sink's history in PostgreSQL.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from schemas.models import AlertRecord, CoverageRecord
from schemas.times import format_date, format_instant, start_of_local_day
from streams.core.figures import CoverageCounts, Figures, fold
from streams.core.policy import Policy

ASSETS = Path(__file__).resolve().parent / "assets"

COLUMNS = (
    ("区县", "County", "county"),
    ("在册学生数", "Students on rosters", "on_roster"),
    ("已参保登记", "Registered", "registered"),
    ("已参保缴费", "Covered", "covered"),
    ("参保率", "Coverage rate", "rate"),
    ("较上一节点（百分点）", "Change since previous checkpoint (points)", "rate_change"),
    ("较上一节点新增参保", "Newly covered since previous checkpoint", "covered_change"),
    ("发现重复参保", "Duplicates found", "duplicates_found"),
    ("已清理重复参保", "Duplicates cleaned", "duplicates_cleaned"),
    ("困难群体异地参保", "Hardship students in the wrong place", "wrong_place"),
)


@dataclass(frozen=True)
class ReportRow:
    county: str
    on_roster: int
    registered: int
    covered: int
    rate: float | None
    rate_change: float | None
    covered_change: int | None
    duplicates_found: int
    duplicates_cleaned: int
    wrong_place: int


@dataclass(frozen=True)
class Report:
    pool: str
    pool_name: str
    coverage_year: int
    as_of_date: int  # local days
    previous_checkpoint: int | None  # local days
    counties: tuple[ReportRow, ...]
    total: ReportRow


def report_times(policy: Policy, as_of_date: int) -> tuple[int, int | None, int | None]:
    """(until, previous checkpoint day, its until): a date's figures include everything up to the
    end of that day, so a checkpoint's own tick (00:00 the next day) counts in its report."""
    previous = max((day for day in policy.checkpoints if day < as_of_date), default=None)
    return start_of_local_day(as_of_date + 1), previous, None if previous is None else start_of_local_day(previous + 1)


def build_report(
    policy: Policy, as_of_date: int, coverage: Sequence[CoverageRecord], alerts: Sequence[AlertRecord]
) -> Report:
    until, previous_day, previous_until = report_times(policy, as_of_date)
    now = fold(policy.pool, policy.coverage_year, coverage, alerts, until)
    before = fold(policy.pool, policy.coverage_year, coverage, alerts, previous_until) if previous_until else None
    now_counties, before_counties = now.by("county"), before.by("county") if before else None
    counties = sorted(set(now_counties) | {a.details.county for a in now.alerts.values()})
    # Counties with nothing to report (e.g. only payment alerts, counted elsewhere) are left out.
    rows = tuple(
        row
        for row in (
            _row(now, now_counties.get(c), before_counties.get(c) if before_counties else None, c, before is not None)
            for c in counties
        )
        if row.on_roster or row.duplicates_found or row.wrong_place
    )
    return Report(
        policy.pool,
        policy.name or policy.pool,
        policy.coverage_year,
        as_of_date,
        previous_day,
        rows,
        _row(now, now.total(), before.total() if before else None, None, before is not None),
    )


def _row(
    now: Figures, counts: CoverageCounts | None, earlier: CoverageCounts | None, county: str | None, previous: bool
) -> ReportRow:
    """One county's row (the pool's with ``county`` None); ``previous``: there is a previous checkpoint."""
    on_roster, registered, covered = (counts.on_roster, counts.registered, counts.covered) if counts else (0, 0, 0)
    rate = covered / on_roster if on_roster else None
    earlier_rate = earlier.rate if earlier else None
    return ReportRow(
        county=county or "合计 Total",
        on_roster=on_roster,
        registered=registered,
        covered=covered,
        rate=rate,
        rate_change=None if rate is None or earlier_rate is None else (rate - earlier_rate) * 100,
        covered_change=None if not previous else covered - (earlier.covered if earlier else 0),
        duplicates_found=now.found("DUPLICATE_ENROLLMENT", county),
        duplicates_cleaned=now.cleaned("DUPLICATE_ENROLLMENT", county),
        wrong_place=now.open_by_kind(county)["HARDSHIP_WRONG_PLACE"],
    )


def _cell(row: ReportRow, key: str) -> str | int | float | None:
    value: str | int | float | None = getattr(row, key)
    if key == "rate" and isinstance(value, float):
        return round(value, 4)
    if key == "rate_change" and isinstance(value, float):
        return round(value, 2)
    return value


def write_xlsx(report: Report, path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "按区县"
    sheet.append([zh for zh, _, _ in COLUMNS])
    sheet.append([en for _, en, _ in COLUMNS])
    for row in (*report.counties, report.total):
        sheet.append([_cell(row, key) for _, _, key in COLUMNS])
    for cell in (*sheet[1], *sheet[2], *sheet[sheet.max_row]):
        cell.font = Font(bold=True)
    for cells in sheet.iter_rows(min_row=3, min_col=5, max_col=5):
        cells[0].number_format = "0.00%"
    sheet.freeze_panes = "B3"
    about = workbook.create_sheet("说明")
    for line in _about(report):
        about.append(line)
    workbook.save(path)


def _about(report: Report) -> list[tuple[str, str]]:
    previous = format_date(report.previous_checkpoint) if report.previous_checkpoint is not None else "—"
    return [
        ("统筹区 Pool", f"{report.pool} {report.pool_name}"),
        ("参保年度 Coverage year", str(report.coverage_year)),
        ("统计截止 As of (end of day, China Standard Time)", format_date(report.as_of_date)),
        ("上一节点 Previous checkpoint", previous),
        ("参保率 Coverage rate", "已参保缴费 / 在册学生数 (covered / students on rosters)"),
        ("重复参保 Duplicates", "发现：截至统计日出现过的重复参保；已清理：其中已消除的"),
        ("困难群体异地参保", "截至统计日未消除的困难群体未在待遇审批地参保预警"),
        ("生成 Generated by", "enrollbridge report"),
    ]


def write_html(report: Report, path: Path) -> None:
    def fmt(row: ReportRow, key: str) -> str:
        value = getattr(row, key)
        if value is None:
            return "—"
        if key == "rate":
            return f"{value:.2%}"
        if key == "rate_change":
            return f"{value:+.2f}"
        return str(value)

    header = "".join(f"<th>{html.escape(zh)}<br><small>{html.escape(en)}</small></th>" for zh, en, _ in COLUMNS)
    body = "".join(
        "<tr" + (' class="total"' if row is report.total else "") + ">"
        + "".join(f"<td>{html.escape(fmt(row, key))}</td>" for _, _, key in COLUMNS)
        + "</tr>"
        for row in (*report.counties, report.total)
    )  # fmt: skip
    chart = {
        "counties": [row.county for row in report.counties],
        "rate": [None if row.rate is None else round(row.rate * 100, 2) for row in report.counties],
        "previous": [
            None if row.rate is None or row.rate_change is None else round(row.rate * 100 - row.rate_change, 2)
            for row in report.counties
        ],
    }
    about = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _about(report))
    title = f"{report.pool_name} {report.coverage_year} 年度学生参保情况通报（截至 {format_date(report.as_of_date)}）"
    script = (ASSETS / "echarts.min.js").read_text(encoding="utf-8")
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th {{ background: #eef2f7; text-align: center; }}
tr.total td {{ font-weight: bold; background: #f6f6f6; }}
#chart {{ width: 100%; max-width: 1100px; height: 420px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div id="chart"></div>
<table id="counties"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
<table id="about">{about}</table>
<p><small>Cut-off {html.escape(format_instant(start_of_local_day(report.as_of_date + 1)))}; enrollbridge.</small></p>
<script>{script}</script>
<script>
const data = {json.dumps(chart, ensure_ascii=False)};
const chart = echarts.init(document.getElementById("chart"), null, {{renderer: "svg"}});
chart.setOption({{
  title: {{text: "各区县参保率 Coverage rate by county (%)"}},
  tooltip: {{trigger: "axis"}},
  legend: {{data: ["截至统计日 As of", "上一节点 Previous checkpoint"], bottom: 0}},
  grid: {{top: 60, bottom: 60}},
  xAxis: {{type: "category", data: data.counties}},
  yAxis: {{type: "value", min: 0, max: 100}},
  series: [
    {{name: "截至统计日 As of", type: "bar", data: data.rate, label: {{show: true, position: "top"}}}},
    {{name: "上一节点 Previous checkpoint", type: "bar", data: data.previous}}
  ]
}});
</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
