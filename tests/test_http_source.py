"""The HTTP push source against a real broker: per-record results, dead letters, and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra.admin import ensure_topics
from infra.broker import free_port, wait_for_http
from infra.readback import read_topic
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message
from schemas.models import DeadLetter, PaymentChange, SourceWatermark
from schemas.times import parse_instant
from tests.conftest import TEST_SECRET
from tests.files import GOOD_ROWS
from tests.live import live_settings

pytestmark = pytest.mark.kafka
TAX_TOKEN = "tax-token-0123456789abcdef"
ROSTER_TOKEN = "roster-token-0123456789abcdef"
READ_TIMEOUT = 2.0
LATENESS = 3600.0


class Server:
    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{port}"

    def post(self, source: str, body: Any, token: str | None, what: str = "records") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        request = urllib.request.Request(f"{self.url}/v1/{what}/{source}", data=data, method="POST")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def topic(self, name: str) -> list[bytes]:
        async def read() -> list[bytes]:
            return [record.value async for record in read_topic(self.settings, name)]

        return asyncio.run(read())


@pytest.fixture
def server(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Server]:
    settings = live_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    port = free_port()
    env = {
        **os.environ,
        "ENROLLBRIDGE_SECRET": TEST_SECRET,
        "ENROLLBRIDGE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENROLLBRIDGE_TOPIC_PREFIX": settings.topic_prefix,
        "ENROLLBRIDGE_HTTP_TOKENS": f"tax={TAX_TOKEN},education={ROSTER_TOKEN}",
        "ENROLLBRIDGE_HTTP_MAX_BYTES": str(64 * 1024),
        "ENROLLBRIDGE_HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
        "ENROLLBRIDGE_HTTP_LATENESS": str(LATENESS),
    }
    log = (tmp_path / "http.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "enrollbridge", "http-source", "--http-port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, still_alive=lambda: process.poll() is None)
        yield Server(settings, port)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_a_good_batch_is_on_the_topic_when_acknowledged(server: Server) -> None:
    batch = [GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "payment_ref": "PJ-2"}, {**GOOD_ROWS["tax"], "票据号": "PJ-3"}]
    batch[2].pop("payment_ref")
    status, body = server.post("tax", batch, TAX_TOKEN)
    assert status == 200 and (body["accepted"], body["rejected"]) == (3, 0)
    stored = [
        decode_message(value, ("PaymentChange",))
        for value in server.topic(Topics(server.settings.topic_prefix).source("tax"))
    ]
    assert sorted(e.event_id for e in stored if isinstance(e, PaymentChange)) == sorted(
        r["event_id"] for r in body["results"]
    )


def test_bad_records_get_their_own_error_and_a_dead_letter(server: Server) -> None:
    batch = {"records": [GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "amount": "-5"}, "not a record", {"payment_ref": "x"}]}
    status, body = server.post("tax", batch, TAX_TOKEN)
    assert status == 200 and (body["accepted"], body["rejected"]) == (1, 3)
    assert [(r["index"], r["status"], r.get("error_code")) for r in body["results"]] == [
        (0, "accepted", None),
        (1, "rejected", "NEGATIVE_AMOUNT"),
        (2, "rejected", "BAD_JSON"),
        (3, "rejected", "MISSING_FIELD"),
    ]
    letters = [
        decode_message(v, ("DeadLetter",)) for v in server.topic(Topics(server.settings.topic_prefix).dead_letters)
    ]
    assert sorted(letter.line or 0 for letter in letters if isinstance(letter, DeadLetter)) == [2, 3, 4]
    assert all(GOOD_ROWS["tax"]["id_number"] not in letter.model_dump_json() for letter in letters)


def test_a_record_that_gives_a_column_twice_is_refused(server: Server) -> None:
    good = orjson.dumps(GOOD_ROWS["tax"])
    same_key_twice = good[:-1] + b', "amount" : "999.00"}'  # JSON keeps the last: which amount was meant?
    two_names = orjson.dumps({**GOOD_ROWS["tax"], "缴费金额": "999.00"})
    nested = orjson.dumps({**GOOD_ROWS["tax"], "channel": {"a": 1, "b": {"c": 2}}})  # more key ends, no repeat
    status, body = server.post("tax", b"[" + b",".join([good, same_key_twice, two_names, nested]) + b"]", TAX_TOKEN)
    assert status == 200
    assert [(r["status"], r.get("error_code")) for r in body["results"][:3]] == [
        ("accepted", None), ("rejected", "BAD_ROW"), ("rejected", "BAD_ROW"),
    ]  # fmt: skip
    assert body["results"][1]["message"].endswith("the column amount is given twice ('amount' twice)")
    assert body["results"][2]["message"].endswith("the column amount is given twice ('amount' and '缴费金额')")
    assert body["results"][3]["status"] == "accepted"  # a nested object's keys are no repeat


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong-token-0123456789abcdef", 401), (ROSTER_TOKEN, 403)],
    ids=["no-token", "unknown-token", "other-agency"],
)
def test_a_token_that_may_not_push_this_source_is_refused_and_nothing_is_written(
    server: Server, token: str | None, status: int
) -> None:
    answer, text = server.post("tax", [GOOD_ROWS["tax"]], token)
    assert answer == status
    assert TAX_TOKEN not in str(text) and ROSTER_TOKEN not in str(text)
    topics = Topics(server.settings.topic_prefix)
    assert server.topic(topics.source("tax")) == [] and server.topic(topics.dead_letters) == []


def test_malformed_and_oversized_bodies_are_refused(server: Server) -> None:
    assert server.post("tax", b"{not json", TAX_TOKEN)[0] == 400
    assert server.post("tax", {"rows": []}, TAX_TOKEN)[0] == 400
    assert server.post("tax", [GOOD_ROWS["tax"]] * 400, TAX_TOKEN)[0] == 413  # over 64 KiB
    assert server.post("nonsense", [], TAX_TOKEN)[0] == 404


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_is_case_insensitive(server: Server, scheme: str) -> None:
    request = urllib.request.Request(
        f"{server.url}/v1/records/tax", data=orjson.dumps([GOOD_ROWS["tax"]]), method="POST",
        headers={"Authorization": f"{scheme} {TAX_TOKEN}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and orjson.loads(response.read())["accepted"] == 1


def test_too_many_records_says_so(server: Server) -> None:
    status, text = server.post("tax", [{}] * 10_001, TAX_TOKEN)  # 30 KB: under the byte limit
    assert status == 413
    assert "too many records: 10001 in one request, at most 10000" in text
    status, text = server.post("tax", [GOOD_ROWS["tax"]] * 400, TAX_TOKEN)
    assert status == 413 and f"body over {64 * 1024} bytes (ENROLLBRIDGE_HTTP_MAX_BYTES)" in text
    assert server.topic(Topics(server.settings.topic_prefix).source("tax")) == []


def test_a_body_that_trickles_is_cut_off_after_the_read_timeout(server: Server) -> None:
    body = orjson.dumps([GOOD_ROWS["tax"]])
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/records/tax HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TAX_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        connection.settimeout(0.3)
        for byte in body:  # one byte every 0.3 s: the whole body would take minutes
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break  # the server closed the connection
            try:
                chunk = connection.recv(4096)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        elapsed = time.monotonic() - started
        connection.settimeout(5)
        with contextlib.suppress(OSError):
            while chunk := connection.recv(4096):  # the rest of the answer, until the server closes
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 2 s" in answer
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 5
    assert server.topic(Topics(server.settings.topic_prefix).source("tax")) == []


def _declarations(server: Server) -> list[SourceWatermark]:
    found = []
    for value in server.topic(Topics(server.settings.topic_prefix).watermarks):
        watermark = decode_message(value, ("SourceWatermark",))
        assert isinstance(watermark, SourceWatermark)
        found.append(watermark)
    return found


def test_an_agency_declares_its_watermark(server: Server) -> None:
    status, body = server.post("tax", {"complete_through": "2024-01-31 00:00:00"}, TAX_TOKEN, what="watermarks")
    assert status == 200, body
    assert (body["source"], body["complete_through"]) == ("tax", "2024-01-31T00:00:00.000+08:00")
    declared = [w for w in _declarations(server) if w.origin == "http: declared by the agency"]
    assert [(w.source, w.complete_through) for w in declared] == [("tax", parse_instant("2024-01-31T00:00+08:00"))]
    # Only for its own source, and only a time.
    assert server.post("education", {"complete_through": "2024-01-31"}, TAX_TOKEN, what="watermarks")[0] == 403
    assert server.post("tax", {"complete_through": "2024-01-31"}, None, what="watermarks")[0] == 401
    assert server.post("tax", {"complete_through": "yesterday"}, TAX_TOKEN, what="watermarks")[0] == 400
    assert server.post("tax", b"[", TAX_TOKEN, what="watermarks")[0] == 400


def test_with_a_lateness_the_source_declares_now_minus_it(server: Server) -> None:
    # ENROLLBRIDGE_HTTP_LATENESS is set: at start, each source with a token is declared complete up to
    # now minus the lateness (and again every minute).
    deadline = time.monotonic() + 30
    by_lateness: list[SourceWatermark] = []
    while time.monotonic() < deadline and {w.source for w in by_lateness} != {"tax", "education"}:
        time.sleep(0.5)
        by_lateness = [w for w in _declarations(server) if w.origin == "http: now minus lateness"]
    assert {w.source for w in by_lateness} == {"tax", "education"}
    for watermark in by_lateness:
        assert watermark.declared_at - watermark.complete_through == LATENESS * 1000
