"""The live dashboard: coverage by county and school type, its course over the checkpoints, open
alerts by kind and a feed of recent transitions (masked), updating without a reload.

It follows the alerts and coverage topics itself (no consumer group: every dashboard reads from the
start) and computes its figures with ``streams.core.figures``, like the report, so it needs no database.
A login token guards every page and API call; the page needs no internet (ECharts is served from
the package).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from enrollbridge.names import (
    KIND_NAMES,
    SCHOOL_TYPE_NAMES,
    SOURCE_NAMES,
    pool_label,
    region_label,
    region_name,
    school_type_zh,
    status_zh,
)
from enrollbridge.sheets import cst_datetime
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import UndecodableMessage, decode_message
from schemas.models import AlertRecord, CoverageRecord, SourceWatermark
from schemas.times import format_date, start_of_local_day
from streams.core.figures import Figures, fold
from streams.core.policy import Policy
from streams.core.rules import KIND_ORDER

ASSETS = Path(__file__).resolve().parent / "assets"
COOKIE = "enrollbridge_dashboard"
_SCHOOL_TYPE_ORDER = {school_type: rank for rank, school_type in enumerate(SCHOOL_TYPE_NAMES)}  # by age


class LiveFigures:
    """The records of one pool and year as they arrive, and the figures computed from them."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.coverage: list[CoverageRecord] = []
        self.alerts: list[AlertRecord] = []
        self.now = Figures(policy.pool, policy.coverage_year)
        self.recent: deque[AlertRecord] = deque(maxlen=20)
        self.latest = 0  # the latest as_of seen: how far the season has got
        self.undecodable = 0
        self._course: tuple[int, list[dict[str, Any]]] = (-1, [])
        self.watermarks: dict[str, SourceWatermark] = {}  # the furthest declaration of each source

    def add_watermark(self, watermark: SourceWatermark) -> None:
        """A source's completeness declaration; watermarks never move back, so the furthest one counts."""
        current = self.watermarks.get(watermark.source)
        if current is None or watermark.complete_through > current.complete_through:
            self.watermarks[watermark.source] = watermark

    def sources(self) -> list[dict[str, Any]]:
        """Each source's watermark, and which one is lowest (the one holding the live clock, if gating)."""
        lowest = min((w.complete_through for w in self.watermarks.values()), default=None)
        return [
            {
                "source": source,
                "label": SOURCE_NAMES[source][0],
                "complete_through": _shown_time(mark.complete_through) if mark else None,
                "declared_at": _shown_time(mark.declared_at) if mark else None,
                "lowest": mark is not None and mark.complete_through == lowest,
            }
            for source in SOURCE_NAMES
            for mark in [self.watermarks.get(source)]
        ]

    def add(self, record: AlertRecord | CoverageRecord) -> None:
        if record.pool != self.policy.pool or record.coverage_year != self.policy.coverage_year:
            return
        self.latest = max(self.latest, record.as_of)
        if isinstance(record, CoverageRecord):
            self.coverage.append(record)
            self.now.add_coverage(record)
        else:
            self.alerts.append(record)
            self.now.add_alert(record)
            self.recent.appendleft(record)

    def course(self) -> list[dict[str, Any]]:
        """Coverage at each checkpoint passed so far (recomputed only when records arrived)."""
        size = len(self.coverage) + len(self.alerts)
        if self._course[0] != size:
            points = []
            for day in self.policy.checkpoints:
                until = start_of_local_day(day + 1)
                if until > self.latest:
                    break
                total = fold(self.policy.pool, self.policy.coverage_year, self.coverage, (), until).total()
                points.append({"checkpoint": format_date(day), "rate": _percent(total.rate), "covered": total.covered,
                               "on_roster": total.on_roster})  # fmt: skip
            self._course = (size, points)
        return self._course[1]

    def snapshot(self) -> dict[str, Any]:
        total = self.now.total()
        open_kinds = self.now.open_by_kind()
        return {
            "pool": self.policy.pool,
            "pool_name": f"{pool_label(self.policy.pool, self.policy.name)} {self.policy.coverage_year}",
            "coverage_year": self.policy.coverage_year,
            "as_of": _shown_time(self.latest) if self.latest else None,
            "records": len(self.coverage) + len(self.alerts),
            "undecodable": self.undecodable,  # counted, not shown as figures: the worker dead-letters them
            "total": {
                "on_roster": total.on_roster,
                "registered": total.registered,
                "covered": total.covered,
                "rate": _percent(total.rate),
            },
            "by_county": [
                {**group, "name": region_name(group["key"]) or group["key"], "label": region_label(group["key"])}
                for group in _groups(self.now, "county")
            ],
            "by_school_type": sorted(
                ({**group, "label": school_type_zh(group["key"])} for group in _groups(self.now, "school_type")),
                key=lambda group: _SCHOOL_TYPE_ORDER.get(group["key"], len(_SCHOOL_TYPE_ORDER)),
            ),
            "course": self.course(),
            "sources": self.sources(),
            "open_by_kind": {kind: open_kinds[kind] for kind in KIND_ORDER},
            "kinds": [
                {"kind": kind, "zh": KIND_NAMES[kind][0], "en": KIND_NAMES[kind][1], "open": open_kinds[kind]}
                for kind in KIND_ORDER
            ],
            "recent": [
                {
                    "as_of": _shown_time(a.as_of),
                    "kind": a.kind,
                    "kind_zh": KIND_NAMES[a.kind][0],
                    "status": a.status,
                    "status_zh": status_zh(a.status),
                    "county": region_label(a.details.county),
                    "masked_id": a.details.masked_id,
                }
                for a in self.recent
            ],
        }


def _shown_time(epoch_ms: int) -> str:
    """China Standard Time as people write it: 2023-10-01 08:00:00."""
    return cst_datetime(epoch_ms).strftime("%Y-%m-%d %H:%M:%S")


def _percent(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)


def _groups(figures: Figures, grouping: str) -> list[dict[str, Any]]:
    return [
        {"key": key, "on_roster": c.on_roster, "covered": c.covered, "rate": _percent(c.rate)}
        for key, c in figures.by(grouping).items()
    ]


async def follow_topics(settings: Settings, figures: LiveFigures, stop: asyncio.Event) -> None:
    """Feed the figures from the alerts and coverage topics, from their beginning, until ``stop``."""
    from aiokafka import AIOKafkaConsumer

    from infra.kafka import aiokafka_options, start_client

    topics = Topics(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.alerts, topics.coverage, topics.watermarks, **aiokafka_options(settings), enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )  # fmt: skip
    await start_client(consumer, settings)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                wanted = {topics.alerts: "AlertRecord", topics.watermarks: "SourceWatermark"}.get(
                    tp.topic, "CoverageRecord"
                )
                for record in records:
                    try:
                        decoded = decode_message(record.value, (wanted,))
                    except UndecodableMessage:
                        figures.undecodable += 1  # the worker dead-letters what it reads; here we only count
                        continue
                    if isinstance(decoded, SourceWatermark):
                        figures.add_watermark(decoded)
                        continue
                    assert isinstance(decoded, AlertRecord | CoverageRecord)
                    figures.add(decoded)
    finally:
        await consumer.stop()


class Dashboard:
    def __init__(self, figures: LiveFigures, token: str) -> None:
        self.figures = figures
        self.token = token

    def _allowed(self, request: web.Request) -> bool:
        offered = request.cookies.get(COOKIE, "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header[7:]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in ("/login", "/health") or request.path.startswith("/assets/") or self._allowed(request):
            response: web.StreamResponse = await handler(request)
            return response
        return web.Response(status=401, text=_REFUSED, content_type="text/html", charset="utf-8")

    async def login(self, request: web.Request) -> web.Response:
        offered = request.query.get("token", "")
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return web.Response(status=401, text=_REFUSED, content_type="text/html", charset="utf-8")
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        raise response

    async def page(self, _request: web.Request) -> web.Response:
        return web.Response(text=(ASSETS / "dashboard.html").read_text(encoding="utf-8"), content_type="text/html",
                            charset="utf-8")  # fmt: skip

    async def api(self, _request: web.Request) -> web.Response:
        return web.json_response(self.figures.snapshot())

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"records": len(self.figures.coverage) + len(self.figures.alerts)})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/login", self.login)
        app.router.add_get("/", self.page)
        app.router.add_get("/api/figures", self.api)
        app.router.add_get("/health", self.health)
        app.router.add_static("/assets/", ASSETS, show_index=False)
        return app


def new_token() -> str:
    return secrets.token_urlsafe(18)


async def serve(settings: Settings, policy: Policy, token: str, host: str, port: int) -> None:
    """Follow the topics and serve the dashboard until cancelled."""
    figures = LiveFigures(policy)
    stop = asyncio.Event()
    runner = web.AppRunner(Dashboard(figures, token).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await follow_topics(settings, figures, stop)
    finally:
        stop.set()
        await runner.cleanup()


_REFUSED = """<!doctype html><meta charset="utf-8"><title>enrollbridge</title>
<h1>需要登录 Login required</h1><p>Open the dashboard with the link that carries its token.</p>"""
