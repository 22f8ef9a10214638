"""HTTP push source: agencies whose systems send records as they happen.

``POST /v1/records/{source}`` with ``Authorization: Bearer <token>`` and a JSON body -- an array of
records, or ``{"records": [...]}``, each record an object with the same columns (canonical or
Chinese) as the agency's files. Each token belongs to one agency and may push only its source.

The response comes only after every record is on Kafka (acks=all): accepted records on the agency's
topic, rejected ones on the dead-letter topic. It lists a result per record, in order. If Kafka
cannot take them, the answer is 503 and nothing is acknowledged; sending the batch again is safe
(a re-delivered record has the same event id and changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import time
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.deadletter import record_dead_letter
from connectors.identity import Secret
from connectors.ingest import convert_row, record_type
from connectors.readers import Row, map_record, repeated_key, repeated_keys
from infra.errors import InputError
from infra.http import MIN_TOKEN_LENGTH, bearer_token
from infra.kafka import aiokafka_options, start_client
from infra.settings import Settings
from infra.topics import SOURCE_EVENT, Topics
from schemas.codec import encode_message
from schemas.models import FieldError, SourceWatermark
from schemas.times import format_instant, parse_instant

MAX_RECORDS = 10_000
LATENESS_PERIOD_SECONDS = 60.0


def parse_tokens(text: str) -> dict[str, str]:
    """``source=token,source=token`` (from ENROLLBRIDGE_HTTP_TOKENS) as token -> source."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, _, token = item.partition("=")
        if source not in SOURCE_EVENT or len(token) < MIN_TOKEN_LENGTH:
            raise InputError(
                "ENROLLBRIDGE_HTTP_TOKENS: each entry is source=token, "
                f"with a known source and a token of {MIN_TOKEN_LENGTH}+ characters"
            )
        tokens[token] = source
    if not tokens:
        raise InputError(
            "ENROLLBRIDGE_HTTP_TOKENS is empty: give each agency a token, e.g. tax=<random>,education=<random>"
        )
    return tokens


class HttpSource:
    def __init__(self, settings: Settings, secret: Secret, tokens: dict[str, str]) -> None:
        self.settings = settings
        self.secret = secret
        self.tokens = tokens
        self.topics = Topics(settings.topic_prefix)
        self.producer: AIOKafkaProducer | None = None
        self._requests = itertools.count(1)
        self._lateness: asyncio.Task[None] | None = None

    def source_of(self, request: web.Request) -> str | None:
        """The agency the bearer token belongs to; every token is compared, in constant time each."""
        offered = (bearer_token(request.headers.get("Authorization", "")) or "").encode()
        found = None
        for token, source in self.tokens.items():
            if hmac.compare_digest(offered, token.encode()):
                found = source
        return found

    def _authorised(self, request: web.Request) -> str:
        """The source of the path, when the request's token may push it (else 404, 401 or 403)."""
        source = request.match_info["source"]
        if source not in SOURCE_EVENT:
            raise web.HTTPNotFound(text=f"unknown source {source!r}\n")
        allowed = self.source_of(request)
        if allowed is None:
            raise web.HTTPUnauthorized(text="missing or unknown bearer token\n", headers={"WWW-Authenticate": "Bearer"})
        if allowed != source:
            raise web.HTTPForbidden(text=f"this token may push {allowed} records only\n")
        return source

    async def watermarks(self, request: web.Request) -> web.Response:
        """``POST /v1/watermarks/{source}`` with ``{"complete_through": ISO-TIME}``: the agency declares that
        every record it has to send with a version time before that instant has been sent."""
        source = self._authorised(request)
        try:
            body = orjson.loads(await asyncio.wait_for(request.read(), self.settings.http_read_timeout))
        except (orjson.JSONDecodeError, TimeoutError):
            raise web.HTTPBadRequest(text='expected {"complete_through": "2024-01-31T00:00:00+08:00"}\n') from None
        text = body.get("complete_through") if isinstance(body, dict) else None
        try:
            complete_through = parse_instant(text) if isinstance(text, str) and len(text) <= 64 else None
        except ValueError:
            complete_through = None
        if complete_through is None:
            raise web.HTTPBadRequest(text="complete_through: not an ISO 8601 time (no offset = China Standard Time)\n")
        declared = await self._declare(source, complete_through, "http: declared by the agency")
        return web.json_response(
            {"source": source, "complete_through": format_instant(declared.complete_through),
             "declared_at": format_instant(declared.declared_at)}
        )  # fmt: skip

    async def _declare(
        self, source: str, complete_through: int, origin: str, declared_at: int | None = None
    ) -> SourceWatermark:
        assert self.producer is not None
        declared_at = int(time.time() * 1000) if declared_at is None else declared_at
        watermark = SourceWatermark(
            source=source, complete_through=complete_through, declared_at=declared_at, origin=origin
        )
        try:
            await (await self.producer.send(self.topics.watermarks, encode_message(watermark), key=source.encode()))
        except KafkaError as error:
            raise web.HTTPServiceUnavailable(
                text=f"watermark not stored ({type(error).__name__}); send it again\n"
            ) from None
        return watermark

    async def _declare_with_lateness(self, lateness_ms: int) -> None:
        """Declare every source with a token complete up to now minus the lateness, every minute: for feeds
        that send as things happen and can be trusted to be at most that late."""
        sources = sorted(set(self.tokens.values()))
        while True:
            for source in sources:
                now = int(time.time() * 1000)
                with contextlib.suppress(web.HTTPServiceUnavailable):  # Kafka away: declared again next time
                    await self._declare(source, now - lateness_ms, "http: now minus lateness", now)
            await asyncio.sleep(LATENESS_PERIOD_SECONDS)

    async def records(self, request: web.Request) -> web.Response:
        source = self._authorised(request)
        try:
            # A body that trickles in would hold a connection (and its memory) for as long as the sender likes.
            data = await asyncio.wait_for(request.read(), self.settings.http_read_timeout)
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the body did not arrive within {self.settings.http_read_timeout:g} s; send it again\n",
                headers={"Connection": "close"},
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.settings.http_max_bytes,
                actual_size=request.content_length or self.settings.http_max_bytes + 1,
                text=f"body over {self.settings.http_max_bytes} bytes (ENROLLBRIDGE_HTTP_MAX_BYTES); "
                "send fewer records per request\n",
            ) from None
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise web.HTTPBadRequest(text=f"body is not JSON: {error.msg}\n") from None
        # Read again where a record gives a key twice (orjson keeps the last silently): it is refused.
        body = repeated_keys(data, body)
        records = body.get("records") if isinstance(body, dict) else body
        if not isinstance(records, list):
            raise web.HTTPBadRequest(text='expected a JSON array of records or {"records": [...]}\n')
        if len(records) > MAX_RECORDS:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_RECORDS,
                actual_size=len(records),
                text=f"too many records: {len(records)} in one request, at most {MAX_RECORDS}; "
                "split the batch (nothing was stored)\n",
            )
        return web.json_response(await self._publish(source, next(self._requests), records))

    async def _publish(self, source: str, request_id: int, records: list[Any]) -> dict[str, Any]:
        assert self.producer is not None
        model = record_type(source)
        header_names = model.header_names()
        topic = self.topics.source(source)
        results: list[dict[str, Any]] = []
        messages: list[tuple[str, bytes, bytes]] = []
        # Every record is turned into its event or dead letter before the first is sent: whatever a
        # record holds, the batch is answered record by record, never half-published and then failed.
        for index, obj in enumerate(records):
            if isinstance(obj, dict):
                values, labels, _, problem = map_record(obj, header_names, repeated_key(obj))
                outcome = convert_row(model, Row(index + 1, values, problem, labels), self.secret)
            else:
                values = {}
                outcome = [FieldError(code="BAD_JSON", message=f"record {index} is not a JSON object")]
            if isinstance(outcome, list):
                origin = f"http request {request_id} record {index}"
                letter = record_dead_letter(source, origin, values, outcome, line=index + 1)
                messages.append((self.topics.dead_letters, source.encode(), encode_message(letter)))
                first = outcome[0]
                results.append({"index": index, "status": "rejected", "error_code": first.code, "field": first.field,
                                "message": letter.message})  # fmt: skip
            else:
                messages.append((topic, outcome.person_key.encode(), encode_message(outcome)))
                results.append({"index": index, "status": "accepted", "event_id": outcome.event_id})
        try:
            pending = [await self.producer.send(to, value, key=key) for to, key, value in messages]
            await asyncio.gather(*pending)
        except KafkaError as error:
            raise web.HTTPServiceUnavailable(
                text=f"records not stored ({type(error).__name__}); send them again\n"
            ) from None
        accepted = sum(1 for result in results if result["status"] == "accepted")
        return {"request": request_id, "accepted": accepted, "rejected": len(results) - accepted, "results": results}

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "time": int(time.time() * 1000)})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.http_max_bytes)
        app.router.add_post("/v1/records/{source}", self.records)
        app.router.add_post("/v1/watermarks/{source}", self.watermarks)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self.producer = AIOKafkaProducer(**aiokafka_options(self.settings), acks="all", linger_ms=5)
        await start_client(self.producer, self.settings)
        if self.settings.http_lateness is not None:
            self._lateness = asyncio.create_task(self._declare_with_lateness(int(self.settings.http_lateness * 1000)))

    async def _stop(self, _app: web.Application) -> None:
        if self._lateness is not None:
            self._lateness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lateness
        if self.producer is not None:
            await self.producer.stop()
