"""The monthly county report (按月通报): coverage per county as of a date, its change since the
previous checkpoint, duplicates found and cleaned, hardship students registered in the wrong place,
students with a waiting period (and of those, after a lapse), and covered students by consecutive
covered years (1, 2, 3, 4+: the continuity incentives start at four); the same figures for the whole
pool. Written as a self-contained HTML page (chart by ECharts,
inlined: no internet needed) and as XLSX.

Figures come from ``streams.core.figures`` over the engine's output up to the report date: either a
replay of the log run here, or the sink's history in PostgreSQL.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from enrollbridge.names import category_zh, pool_label, region_edition, region_label
from enrollbridge.sheets import excel_text, set_cell
from infra.errors import InputError
from schemas.models import AlertRecord, CoverageRecord
from schemas.times import format_date, format_instant, start_of_local_day
from streams.core.figures import CONTINUITY, CoverageCounts, Figures, fold
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
    ("待遇等待期", "Waiting periods", "waiting"),
    ("其中断保", "of which after a lapse", "waiting_lapsed"),
    ("连续参保1年", "Covered 1 year in a row", "continuous_1"),
    ("连续参保2年", "2 years in a row", "continuous_2"),
    ("连续参保3年", "3 years in a row", "continuous_3"),
    ("连续参保4年及以上", "4 or more years in a row", "continuous_4"),
)


@dataclass(frozen=True)
class ReportRow:
    county: str  # as shown: 柳城县 450222 (or the total's label)
    on_roster: int
    registered: int
    covered: int
    rate: float | None
    rate_change: float | None
    covered_change: int | None
    duplicates_found: int
    duplicates_cleaned: int
    wrong_place: int
    waiting: int = 0
    waiting_lapsed: int = 0
    continuous_1: int = 0
    continuous_2: int = 0
    continuous_3: int = 0
    continuous_4: int = 0


@dataclass(frozen=True)
class Report:
    pool: str
    pool_name: str
    coverage_year: int
    as_of_date: int  # local days
    previous_checkpoint: int | None  # local days
    counties: tuple[ReportRow, ...]
    total: ReportRow
    subsidy: tuple[tuple[str, float], ...] = ()  # hardship category -> subsidy share, from the policy


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
        if row.on_roster or row.duplicates_found or row.wrong_place or row.waiting
    )
    return Report(
        policy.pool,
        pool_label(policy.pool, policy.name),
        policy.coverage_year,
        as_of_date,
        previous_day,
        rows,
        _row(now, now.total(), before.total() if before else None, None, before is not None),
        tuple(sorted(policy.subsidy.items())),
    )


def _row(
    now: Figures, counts: CoverageCounts | None, earlier: CoverageCounts | None, county: str | None, previous: bool
) -> ReportRow:
    """One county's row (the pool's with ``county`` None); ``previous``: there is a previous checkpoint."""
    on_roster, registered, covered = (counts.on_roster, counts.registered, counts.covered) if counts else (0, 0, 0)
    rate = covered / on_roster if on_roster else None
    earlier_rate = earlier.rate if earlier else None
    waiting, waiting_lapsed = now.waiting(county)
    continuous = [counts.continuous[bucket] if counts else 0 for bucket in CONTINUITY]
    return ReportRow(
        county=region_label(county) if county else "合计 Total",
        on_roster=on_roster,
        registered=registered,
        covered=covered,
        rate=rate,
        rate_change=None if rate is None or earlier_rate is None else (rate - earlier_rate) * 100,
        covered_change=None if not previous else covered - (earlier.covered if earlier else 0),
        duplicates_found=now.found("DUPLICATE_ENROLLMENT", county),
        duplicates_cleaned=now.cleaned("DUPLICATE_ENROLLMENT", county),
        wrong_place=now.open_by_kind(county)["HARDSHIP_WRONG_PLACE"],
        waiting=waiting,
        waiting_lapsed=waiting_lapsed,
        continuous_1=continuous[0],
        continuous_2=continuous[1],
        continuous_3=continuous[2],
        continuous_4=continuous[3],
    )


def _cell(row: ReportRow, key: str) -> str | int | float | None:
    value: str | int | float | None = getattr(row, key)
    if key == "rate" and isinstance(value, float):
        return round(value, 4)
    if key == "rate_change" and isinstance(value, float):
        return round(value, 2)
    return value


_FORMATS = {"rate": "0.00%", "rate_change": "+0.00;-0.00;0.00"}
_CONTINUITY_KEYS = ("continuous_1", "continuous_2", "continuous_3", "continuous_4")


def write_xlsx(report: Report, path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "按区县"
    rows = (*report.counties, report.total)
    for number, (zh, en, key) in enumerate(COLUMNS, start=1):
        set_cell(sheet, 1, number, zh)
        set_cell(sheet, 2, number, en)
        for offset, row in enumerate(rows, start=3):
            value = _cell(row, key)
            set_cell(sheet, offset, number, value, "int" if isinstance(value, int) else "text")
            if key in _FORMATS and value is not None:
                sheet.cell(row=offset, column=number).number_format = _FORMATS[key]
        width = max(len(en), 2 * len(zh), *(len(str(_cell(row, key))) + 4 for row in rows))
        sheet.column_dimensions[get_column_letter(number)].width = min(40, width + 2)
    for cell in (*sheet[1], *sheet[2], *sheet[sheet.max_row]):
        cell.font = Font(bold=True)
    sheet.freeze_panes = "B3"
    sheet.auto_filter.ref = f"A2:{get_column_letter(len(COLUMNS))}{2 + len(report.counties)}"
    about = workbook.create_sheet("说明")
    for number, (key, value) in enumerate(_about(report), start=1):
        set_cell(about, number, 1, key)
        set_cell(about, number, 2, value)
    about.column_dimensions["A"].width = 44
    about.column_dimensions["B"].width = 110
    workbook.properties.title = excel_text(_title(report))
    workbook.save(path)


def _about(report: Report) -> list[tuple[str, str]]:
    previous = format_date(report.previous_checkpoint) if report.previous_checkpoint is not None else "—"
    subsidy = "；".join(f"{category_zh(c)} {share:.0%}" for c, share in report.subsidy) or "—"
    return [
        ("统筹区 Pool", report.pool_name),
        ("参保年度 Coverage year", str(report.coverage_year)),
        ("统计截止 As of (end of day, China Standard Time)", format_date(report.as_of_date)),
        ("上一节点 Previous checkpoint", previous),
        ("参保率 Coverage rate", "已参保缴费 / 在册学生数 (covered / students on rosters)"),
        (
            "发现重复参保 Duplicates found",
            "截至统计日出现过的重复参保预警（同一参保年度同时有两条及以上有效参保登记）"
            " / duplicate-enrollment alerts opened by the cut-off (two or more active registrations for the year)",
        ),
        (
            "已清理重复参保 Duplicates cleaned",
            "其中截至统计日已消除的：多余的参保登记已注销，只剩一条有效登记（预警状态为已消除）"
            " / of those, the ones resolved by the cut-off: the redundant registration was cancelled, at most one"
            " remains active (the alert's latest transition is RESOLVED)",
        ),
        ("困难群体异地参保 Hardship students in the wrong place", "截至统计日未消除的困难群体未在待遇审批地参保预警"),
        (
            "待遇等待期 Waiting periods",
            "截至统计日设有待遇等待期的人数（逾期缴费或断保后参保），按缴费地区县；其中断保：断保一年及以上"
            " / persons with an open waiting period by the cut-off (a late payment, or enrolling after a lapse),"
            " by the county of the payment; of which after a lapse: one or more lapsed years",
        ),
        (
            "连续参保年数 Years covered in a row",
            "已参保缴费的在册学生按截至本年度连续参保年数分列（1、2、3、4年及以上；连续参保激励自4年起）"
            " / covered students on rosters by consecutive covered years ending with this one (1, 2, 3, 4+:"
            " the continuity incentives start at four)",
        ),
        ("资助比例 Subsidy shares (policy)", subsidy),
        ("区划名称 Region names", f"GB/T 2260，民政部县级以上行政区划代码（{region_edition()}）"),
        ("生成 Generated by", "enrollbridge report"),
    ]


def _title(report: Report) -> str:
    return f"{report.pool_name} {report.coverage_year} 年度学生参保情况通报（截至 {format_date(report.as_of_date)}）"


def write_html(report: Report, path: Path) -> None:
    """One self-contained page (ECharts inlined). The chart is drawn without animation, so a printout,
    a PDF or a headless capture shows it complete; ``@media print`` lays the page out on A4 landscape."""

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
        "counties": [row.county.rsplit(" ", 1)[0] for row in report.counties],
        "rate": [None if row.rate is None else round(row.rate * 100, 2) for row in report.counties],
        "previous": [
            None if row.rate is None or row.rate_change is None else round(row.rate * 100 - row.rate_change, 2)
            for row in report.counties
        ],
        "continuity": [[getattr(row, key) for row in report.counties] for key in _CONTINUITY_KEYS],
        "waiting": [row.waiting for row in report.counties],
    }
    about = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _about(report))
    title = _title(report)
    script = (ASSETS / "echarts.min.js").read_text(encoding="utf-8")
    # JSON inside <script>: "</" must not end the element early (a name could hold it).
    data = json.dumps(chart, ensure_ascii=False).replace("</", "<\\/")
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th {{ background: #eef2f7; text-align: center; }}
#counties td:first-child {{ text-align: left; white-space: nowrap; }}
#about th, #about td {{ text-align: left; }}
tr.total td {{ font-weight: bold; background: #f6f6f6; }}
#chart, #continuity {{ width: 960px; height: 330px; }}
@page {{ size: A4 landscape; margin: 12mm; }}
@media print {{
  body {{ margin: 0; font-size: 10pt; }}
  h1 {{ font-size: 15pt; margin: 0 0 4mm; }}
  th, td {{ padding: 2px 5px; }}
  th {{ background: #eef2f7 !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
  tr.total td {{ background: #f6f6f6 !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
  #chart, #continuity {{ break-inside: avoid; }}
  #counties {{ break-before: auto; }}
  #counties tr, #about tr {{ break-inside: avoid; }}
  #about {{ break-before: page; }}
}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div id="chart"></div>
<div id="continuity"></div>
<table id="counties"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
<table id="about">{about}</table>
<p><small>Cut-off {html.escape(format_instant(start_of_local_day(report.as_of_date + 1)))}; enrollbridge.</small></p>
<script>{script}</script>
<script>
const data = {data};
const chart = echarts.init(document.getElementById("chart"), null, {{renderer: "svg"}});
chart.setOption({{
  animation: false,
  title: {{text: "各区县参保率 Coverage rate by county (%)"}},
  tooltip: {{trigger: "axis"}},
  legend: {{data: ["截至统计日 As of", "上一节点 Previous checkpoint"], bottom: 0}},
  grid: {{top: 60, bottom: 80}},
  xAxis: {{type: "category", data: data.counties,
          axisLabel: {{interval: 0, rotate: data.counties.length > 6 ? 30 : 0}}}},
  yAxis: {{type: "value", min: 0, max: 100}},
  series: [
    {{name: "截至统计日 As of", type: "bar", data: data.rate, label: {{show: true, position: "top"}}}},
    {{name: "上一节点 Previous checkpoint", type: "bar", data: data.previous}}
  ]
}});
const years = ["连续1年 1 year", "2年 2 years", "3年 3 years", "4年及以上 4+ years"];
echarts.init(document.getElementById("continuity"), null, {{renderer: "svg"}}).setOption({{
  animation: false,
  title: {{text: "各区县连续参保年数与待遇等待期 Years covered in a row, and waiting periods, by county"}},
  tooltip: {{trigger: "axis"}},
  legend: {{data: [...years, "待遇等待期 Waiting periods"], bottom: 0}},
  grid: {{top: 60, bottom: 80}},
  xAxis: {{type: "category", data: data.counties,
          axisLabel: {{interval: 0, rotate: data.counties.length > 6 ? 30 : 0}}}},
  yAxis: {{type: "value", min: 0}},
  series: [
    ...years.map((name, i) => ({{name: name, type: "bar", stack: "years", data: data.continuity[i]}})),
    {{name: "待遇等待期 Waiting periods", type: "bar", data: data.waiting}}
  ]
}});
</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def find_chromium() -> str | None:
    """Headless Chromium: ``ENROLLBRIDGE_CHROMIUM``, else Debian's ``chromium`` or another usual name."""
    configured = os.environ.get("ENROLLBRIDGE_CHROMIUM")
    if configured:
        return shutil.which(configured)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def write_pdf(html_path: Path, pdf_path: Path, timeout: float = 120) -> None:
    """Print the report page to PDF with headless Chromium (A4 landscape, from the page's print style)."""
    chromium = find_chromium()
    if chromium is None:
        raise InputError(
            "report --pdf needs headless Chromium, which is not installed (Debian: apt-get install chromium); "
            f"the HTML and XLSX were written: {html_path}"
        )
    with tempfile.TemporaryDirectory(prefix="enrollbridge-chromium-") as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={pdf_path.resolve()}", html_path.resolve().as_uri(),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise InputError(f"Chromium did not print {html_path} within {timeout:.0f} s") from None
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"Chromium could not print {html_path} to PDF (exit {done.returncode}): {last}")
