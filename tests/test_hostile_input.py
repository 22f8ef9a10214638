"""Hostile input: arbitrary bytes, rows and bodies crash nothing, hang nothing, and every record read
is accounted for as an event or a dead letter (or the whole file is refused with one clear error)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.records import RECORD_TYPES
from infra.admin import ensure_topics
from infra.broker import free_port, wait_for_http
from infra.errors import InputError
from infra.topics import SOURCE_EVENT
from schemas import load_schema
from schemas.codec import (
    LOG_EVENT_NAMES,
    SINGLE_OBJECT_MARKER,
    UndecodableMessage,
    decode_message,
    encode_message,
    fingerprint,
)
from schemas.models import DeadLetter, SourceEvent
from tests.conftest import TEST_SECRET
from tests.files import GOOD_ROWS, valid_number, write_csv, write_jsonl, write_xlsx
from tests.live import live_settings
from tests.test_connectors import ingest

SOURCES = tuple(GOOD_ROWS)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KAFKA_MAX_MESSAGE = 1 << 20  # what a default broker accepts
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
cell = st.one_of(
    st.none(), st.text(max_size=30), st.binary(max_size=10).map(lambda b: b.decode("latin-1")),
    st.integers(-(10**20), 10**20), st.floats(), st.booleans(), st.just(valid_number()),
    st.sampled_from(["2024", "380", "450202", "2023-12-31 10:00", "\ufeff", "=cmd|' /C calc'!A0", "\x00"]),
    st.sampled_from([valid_number().translate(FULL_WIDTH), "45" + valid_number()[2:].translate(ARABIC_INDIC),
                     "\u3000２０２４\u3000", "a\tb\nc", "9" * 2_000_000, "学" * 129]),
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _small_and_clean(events: list[SourceEvent], dead: list[DeadLetter]) -> None:
    """No message a connector produces exceeds what Kafka takes, and no event carries a control character."""
    for message in [*events, *dead]:
        assert len(encode_message(message)) < KAFKA_MAX_MESSAGE
    for event in events:
        assert not any(isinstance(v, str) and _CONTROL.search(v) for v in event.model_dump().values()), event


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinity and orjson no integers beyond 64 bits: those go as text."""
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value


def _accounted(source: str, path: Path, rows: int | None = None) -> None:
    try:
        summary, got = ingest(source, path)
    except InputError as error:
        assert str(error) and "\n" not in str(error)  # a whole file refused: one clear line
        return
    assert summary.read == summary.accepted + summary.rejected
    assert (summary.accepted, summary.rejected) == (len(got.events), len(got.dead))
    _small_and_clean(got.events, got.dead)
    if rows is not None:
        assert summary.read + summary.files[0].blank_lines == rows


@pytest.mark.parametrize("source", SOURCES)
@FUZZ
@given(data=st.data())
def test_arbitrary_rows_in_every_format_are_accounted_for(tmp_path: Path, source: str, data: st.DataObject) -> None:
    columns = list(GOOD_ROWS[source])
    rows = data.draw(st.lists(st.fixed_dictionaries({name: cell for name in columns}), min_size=1, max_size=8))
    jsonable = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    _accounted(source, write_jsonl(tmp_path / "f.jsonl", jsonable), len(rows))
    _accounted(source, write_csv(tmp_path / "f.csv", rows), None)
    xlsx_rows = [{k: (v.replace("\x00", "") if isinstance(v, str) else v) for k, v in r.items()} for r in rows]
    try:
        path = write_xlsx(tmp_path / "f.xlsx", xlsx_rows)
    except Exception:  # openpyxl itself refuses some values (control characters): nothing to test then
        return
    _accounted(source, path, len(rows))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".xlsx"])
@FUZZ
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_after_a_good_header_never_crash(tmp_path: Path, suffix: str, body: bytes) -> None:
    header = ",".join(GOOD_ROWS["tax"]).encode() + b"\n"
    path = tmp_path / f"f{suffix}"
    path.write_bytes((header if suffix == ".csv" else b"") + body)
    _accounted("tax", path)


@FUZZ
@given(lines=st.lists(st.one_of(st.text(max_size=60), st.builds(orjson.dumps, st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),  # what orjson can write
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)).map(bytes.decode)), max_size=6))  # fmt: skip
def test_arbitrary_json_lines_are_each_one_event_or_one_dead_letter(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines), encoding="utf-8")
    _accounted("insurance", path)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_record_of_giant_cells_is_one_small_dead_letter(tmp_path: Path, source: str, suffix: str) -> None:
    # 2 MB of UTF-8 per cell in JSON Lines; in CSV just under the 131,072 characters its reader takes.
    giant = "学" * (700_000 if suffix == ".jsonl" else 130_000) + valid_number() + "\x00" * 10
    row: dict[str, Any] = {name: giant for name in ["id_number", *RECORD_TYPES[source].model_fields]}
    if suffix == ".jsonl":
        row["occurred_at"] = [[giant] * 3]  # an array where a time belongs: read as its JSON text
        path = write_jsonl(tmp_path / "f.jsonl", [row])
    else:
        path = write_csv(tmp_path / "f.csv", [row])
    summary, got = ingest(source, path)
    [dead] = got.dead
    assert summary.rejected == 1 and {error.code for error in dead.errors} == {"TOO_LONG"}
    assert len(encode_message(dead)) < 64 * 1024  # far below Kafka's 1 MiB, whatever the input
    assert valid_number() not in dead.model_dump_json() and "\x00" not in str(dead.model_dump())


def test_a_csv_cell_beyond_what_the_reader_takes_is_a_dead_letter(tmp_path: Path) -> None:
    rows = [{**GOOD_ROWS["tax"], "channel": "9" * 2_000_000}, GOOD_ROWS["tax"]]
    summary, got = ingest("tax", write_csv(tmp_path / "tax.csv", rows))
    assert (summary.accepted, summary.rejected) == (1, 1)
    assert (got.dead[0].error_code, got.dead[0].message) == (
        "BAD_ROW",
        "unreadable CSV (line 2): a cell longer than 131,072 characters",
    )


TOPIC_TYPES = [(source, event.schema_name) for source, event in SOURCE_EVENT.items()] + [("log", "ClockTick")]


@pytest.mark.parametrize(("topic", "name"), TOPIC_TYPES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_arbitrary_bytes_on_every_input_topic_only_ever_raise_undecodable(
    topic: str, name: str, data: st.DataObject
) -> None:
    accepted = LOG_EVENT_NAMES if topic == "log" else (name,)
    # Entirely random bytes, and random bodies behind a genuine header (the harder case for the decoder).
    header = SINGLE_OBJECT_MARKER + fingerprint(load_schema(name))
    value = data.draw(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: header + b)))
    try:
        record = decode_message(value, accepted)
    except UndecodableMessage as error:
        assert error.code in {"UNDECODABLE", "UNKNOWN_SCHEMA", "UNEXPECTED_SCHEMA", "INVALID_RECORD"}
        return
    assert record.schema_name in accepted  # rarely, random bytes are a valid record: then it is one


# --- HTTP bodies against the running source -------------------------------------------------------

TOKEN = "tax-fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def http_source(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[tuple[str, Path]]:
    import asyncio

    folder = tmp_path_factory.mktemp("fuzz-http")
    base = live_settings(kafka_bootstrap, folder)
    asyncio.run(ensure_topics(base))
    port = free_port()
    env = {**os.environ, **base.as_environment(), "ENROLLBRIDGE_SECRET": TEST_SECRET,
           "ENROLLBRIDGE_HTTP_TOKENS": f"tax={TOKEN}", "ENROLLBRIDGE_HTTP_MAX_BYTES": str(32 * 1024)}  # fmt: skip
    log = folder / "http.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "enrollbridge", "http-source", "--http-port", str(port)], env=env, stdout=out,
            stderr=out,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", timeout=30, still_alive=lambda: process.poll() is None)
    yield url, log
    process.terminate()
    process.wait(timeout=20)


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(f"{url}/v1/records/tax", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.kafka
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.lists(st.fixed_dictionaries({name: cell for name in GOOD_ROWS["tax"]}), max_size=5).map(
        lambda rows: orjson.dumps([{k: _jsonable(v) for k, v in row.items()} for row in rows])),
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5), st.just({})), max_size=5)
    .map(orjson.dumps),
))  # fmt: skip
def test_arbitrary_http_bodies_get_an_answer_and_every_record_a_result(
    http_source: tuple[str, Path], body: bytes
) -> None:
    url, _ = http_source
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    status, answer = _post(url, body)
    assert status in (200, 400, 413), answer
    if status == 200:
        records = parsed["records"] if isinstance(parsed, dict) else parsed
        assert answer["accepted"] + answer["rejected"] == len(answer["results"]) == len(records)


@pytest.mark.kafka
def test_the_http_source_never_logs_tokens_or_the_secret(http_source: tuple[str, Path]) -> None:
    url, log = http_source
    _post(url, orjson.dumps([GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "region": "x"}]))
    text = log.read_text(errors="replace")
    assert TOKEN not in text and TEST_SECRET not in text and GOOD_ROWS["tax"]["id_number"] not in text


@pytest.mark.kafka
def test_no_record_fails_a_batch_whatever_it_holds(http_source: tuple[str, Path]) -> None:
    url, _ = http_source
    good = GOOD_ROWS["tax"]
    batch = [
        good,
        {**good, "id_number": "45" + good["id_number"][2:].translate(ARABIC_INDIC)},  # crashed person_key: a 500
        {**good, "channel": "微信\u0000"},  # accepted, then stopped the PostgreSQL sink
        {**good, "payment_ref": "P" * 20_000},
        {**good, "id_number": good["id_number"].translate(FULL_WIDTH), "payment_ref": "PJ-2"},
    ]
    status, answer = _post(url, orjson.dumps(batch))
    assert status == 200, answer
    assert [(r["status"], r.get("error_code"), r.get("field")) for r in answer["results"]] == [
        ("accepted", None, None),
        ("rejected", "BAD_ID_FORMAT", "id_number"),
        ("rejected", "BAD_CHARACTER", "channel"),
        ("rejected", "TOO_LONG", "payment_ref"),
        ("accepted", None, None),
    ]
