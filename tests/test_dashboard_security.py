"""The dashboard's login and HTTP headers, against the real server (aiohttp on a loopback port): a
session cookie that is not the token and expires, Secure behind TLS, headers that keep the page from
being framed or sniffed and scripts other than its own from running, and no short tokens."""

from __future__ import annotations

import asyncio
import http.client
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie

import pytest
from aiohttp import web

from enrollbridge.dashboard import COOKIE, Dashboard, LiveFigures
from infra.broker import free_port
from infra.errors import InputError
from streams.core.policy import load_policies
from tests.cli import enrollbridge

TOKEN = "dashboard-token-0123456789"


@dataclass
class Served:
    dashboard: Dashboard
    port: int

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response

    def login(self, headers: dict[str, str] | None = None) -> SimpleCookie:
        response = self.get(f"/login?token={TOKEN}", headers)
        assert response.status == 302
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(response.headers["Set-Cookie"])
        return cookie


def _serve(secure_cookie: bool = False, session_seconds: float = 3600) -> Iterator[Served]:
    policy = load_policies().get("450200", 2024)
    assert policy is not None
    dashboard = Dashboard(LiveFigures(policy), TOKEN, session_seconds, secure_cookie)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(dashboard.app(), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Served(dashboard, port)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve()


def test_the_cookie_holds_a_session_id_that_expires_not_the_token(served: Served) -> None:
    cookie = served.login()[COOKIE]
    assert TOKEN not in cookie.value and len(cookie.value) >= 32
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    assert int(cookie["max-age"]) == 3600
    assert served.get("/api/figures", {"Cookie": f"{COOKIE}={cookie.value}"}).status == 200
    # A cookie made up from the token itself (what the cookie used to hold) is no session.
    assert served.get("/api/figures", {"Cookie": f"{COOKIE}={TOKEN}"}).status == 401
    assert served.get("/api/figures", {"Cookie": f"{COOKIE}=made-up"}).status == 401
    # Each login is its own session.
    assert served.login()[COOKIE].value != cookie.value


def test_a_session_ends_at_its_expiry() -> None:
    for served in _serve(session_seconds=1.0):
        cookie = served.login()[COOKIE]
        assert served.get("/", {"Cookie": f"{COOKIE}={cookie.value}"}).status == 200
        time.sleep(1.2)
        assert served.get("/", {"Cookie": f"{COOKIE}={cookie.value}"}).status == 401


def test_the_cookie_is_secure_behind_tls() -> None:
    for served in _serve():
        assert served.login({"X-Forwarded-Proto": "https"})[COOKIE]["secure"]
    for served in _serve(secure_cookie=True):
        assert served.login()[COOKIE]["secure"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(served: Served, scheme: str) -> None:
    assert served.get("/api/figures", {"Authorization": f"{scheme} {TOKEN}"}).status == 200
    assert served.get("/api/figures", {"Authorization": f"{scheme} wrong-token-0123456789"}).status == 401


@pytest.mark.parametrize("path", ["/", "/api/figures", "/login?token=wrong", f"/login?token={TOKEN}", "/health"])
def test_every_answer_carries_the_security_headers(served: Served, path: str) -> None:
    cookie = served.login()[COOKIE].value
    for headers in ({}, {"Cookie": f"{COOKIE}={cookie}"}):
        response = served.get(path, headers)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_runs_its_own_script_under_the_policy(served: Served) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed; .ci/run installs it")
    from tests.test_dashboard import render

    page = render(chromium, f"http://127.0.0.1:{served.port}/login?token={TOKEN}")
    # The rows of open alerts are made by the page's script: it ran, and fetched the figures.
    assert re.search(r'<tr id="open-UNENROLLED"><td>[^<]+</td><td>[^<]+</td><td>0</td>', page), page[-3000:]


def test_a_short_token_is_refused() -> None:
    policy = load_policies().get("450200", 2024)
    assert policy is not None
    with pytest.raises(InputError, match="shorter than 16"):
        Dashboard(LiveFigures(policy), "short-token")
    run = enrollbridge(
        "dashboard", "--bootstrap-servers", "127.0.0.1:9", env={"ENROLLBRIDGE_DASHBOARD_TOKEN": "0123456789abcde"},
        timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "ENROLLBRIDGE_DASHBOARD_TOKEN is shorter than 16 characters" in run.stderr
