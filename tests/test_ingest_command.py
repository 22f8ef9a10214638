"""`enrollbridge ingest` as a user runs it: its outputs appear whole at the end of a run that
succeeded, and a run that fails part-way leaves nothing behind -- no file, no message on a topic."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from connectors.identity import Secret
from enrollbridge.synth.season import SeasonConfig, SeasonGenerator
from infra.admin import ensure_topics
from infra.readback import read_topic
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message
from streams.core.policy import load_policies
from tests.cli import enrollbridge
from tests.files import GOOD_ROWS, STUDENT, write_csv, write_jsonl
from tests.live import live_settings


def _big_file_with_a_bad_byte_after_the_first_mib(folder: Path) -> Path:
    rows = [{**GOOD_ROWS["tax"], "payment_ref": f"PJ-{number}"} for number in range(12_000)]
    path = write_csv(folder / "tax.csv", rows)
    assert path.stat().st_size > 1 << 20  # the encoding is guessed from the first MiB: UTF-8
    with path.open("ab") as out:
        out.write(b"\xff\xfe not UTF-8\n")
    return path


def _refused(run: object, *expected: str) -> None:
    assert run.returncode == 2, run.stdout  # type: ignore[attr-defined]
    stderr: str = run.stderr  # type: ignore[attr-defined]
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.rstrip().endswith("; nothing was written")
    for text in expected:
        assert text in stderr


def test_a_bad_byte_after_the_first_mib_leaves_no_output(tmp_path: Path, secret_env: str) -> None:
    path = _big_file_with_a_bad_byte_after_the_first_mib(tmp_path)
    run = enrollbridge("ingest", "tax", path, "--out", tmp_path / "events.jsonl")
    _refused(run, f"{path}:12002: not valid utf-8")
    assert sorted(os.listdir(tmp_path)) == ["tax.csv"]  # no events, no dead letters, no partial files


def test_a_missing_column_leaves_no_output_and_is_named_as_the_file_names_its_columns(
    tmp_path: Path, secret_env: str
) -> None:
    chinese = {"id_number": "身份证号", "name": "姓名", "school_code": "学校代码", "school_name": "学校名称",
               "school_type": "学校类型", "school_region": "学校所在地区划代码", "action": "变动类型",
               "occurred_at": "变动时间"}  # fmt: skip
    row = {chinese[name]: value for name, value in GOOD_ROWS["education"].items() if name in chinese}
    path = write_csv(tmp_path / "roster.csv", [row])
    run = enrollbridge("ingest", "education", path, "--out", tmp_path / "events.jsonl")
    _refused(run, f"{path}: missing column 学籍号 (student_ref)")
    assert sorted(os.listdir(tmp_path)) == ["roster.csv"]


def test_a_refused_file_leaves_earlier_outputs_as_they_were(tmp_path: Path, secret_env: str) -> None:
    (tmp_path / "events.jsonl").write_text("earlier run\n")
    garbage = write_csv(tmp_path / "tax.csv", [{name: "x" for name in GOOD_ROWS["tax"]}] * 1000)
    run = enrollbridge("ingest", "tax", garbage, "--out", tmp_path / "events.jsonl")
    _refused(run, "refused after 1,000 records read, the last 1,000 all rejected")
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl", "tax.csv"]
    assert (tmp_path / "events.jsonl").read_text() == "earlier run\n"


def test_a_run_that_succeeds_leaves_exactly_its_two_outputs(tmp_path: Path, secret_env: str) -> None:
    path = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "amount": "-1"}])
    run = enrollbridge("ingest", "tax", path, "--out", tmp_path / "events.jsonl")
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["events.dlq.jsonl", "events.jsonl", "tax.csv"]
    assert (tmp_path / "events.jsonl").read_bytes().count(b"\n") == 1


def test_an_output_folder_that_does_not_exist_is_one_line(tmp_path: Path, secret_env: str) -> None:
    path = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    run = enrollbridge("ingest", "tax", path, "--out", tmp_path / "absent" / "events.jsonl")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"cannot write {tmp_path / 'absent'}" in run.stderr


def _season_file(folder: Path, source: str, students: int) -> Path:
    """A generated agency file (with the generator's bad rows), large enough for several chunks."""
    policies = load_policies()
    policy = policies.get("450200", 2024)
    assert policy is not None
    config = SeasonConfig("450200", 2024, students, 3, folder, policy, policies)
    manifest = SeasonGenerator(config, Secret(b"any")).generate(progress=False)
    return folder / str(manifest["files"][source]["path"])


def test_jobs_write_the_same_bytes_as_one_process(tmp_path: Path, secret_env: str) -> None:
    season = _season_file(tmp_path, "education", 5000)  # over two chunks of rows
    extra = write_csv(tmp_path / "more.csv", [GOOD_ROWS["education"], {**GOOD_ROWS["education"], "action": "X"}])
    outputs = {}
    for jobs in (1, 2, 3):
        out = tmp_path / f"events-{jobs}.jsonl"
        run = enrollbridge("ingest", "education", season, extra, "--out", out, "--jobs", jobs)
        assert run.returncode == 0, run.stderr
        dead = out.with_name(f"events-{jobs}.dlq.jsonl")
        outputs[jobs] = (out.read_bytes(), dead.read_bytes(), run.stdout.replace(str(out.with_suffix("")), "OUT"))
    assert outputs[1][0].count(b"\n") > 5000 and outputs[1][1].count(b"\n") > 10
    assert outputs[2] == outputs[1] and outputs[3] == outputs[1]


# --- to Kafka -------------------------------------------------------------------------------------


def _topics(settings: Settings) -> tuple[list[bytes], list[bytes]]:
    topics = Topics(settings.topic_prefix)

    async def read(name: str) -> list[bytes]:
        return [record.value async for record in read_topic(settings, name)]

    return asyncio.run(read(topics.source("tax"))), asyncio.run(read(topics.dead_letters))


@pytest.fixture
def kafka_env(tmp_path: Path, kafka_bootstrap: str, secret_env: str) -> tuple[Settings, dict[str, str]]:
    settings = live_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    return settings, settings.as_environment()


@pytest.mark.kafka
def test_a_giant_field_is_a_dead_letter_on_kafka_and_the_rows_after_it_are_published(
    tmp_path: Path, kafka_env: tuple[Settings, dict[str, str]]
) -> None:
    settings, env = kafka_env
    rows = [
        GOOD_ROWS["tax"],
        {**GOOD_ROWS["tax"], "payment_ref": "PJ-2", "channel": "微" * 700_000},  # 2 MB: over Kafka's 1 MiB
        {**GOOD_ROWS["tax"], "payment_ref": "PJ-3"},
    ]
    run = enrollbridge("ingest", "tax", write_jsonl(tmp_path / "tax.jsonl", rows), env=env)
    assert run.returncode == 0, run.stderr
    assert "tax: read 3, accepted 2, rejected 1" in run.stdout
    events, dead_letters = _topics(settings)
    assert len(events) == 2
    [letter] = [decode_message(value, ("DeadLetter",)) for value in dead_letters]
    assert orjson.loads(letter.model_dump_json())["error_code"] == "TOO_LONG"


@pytest.mark.kafka
def test_jobs_publish_the_same_messages_in_the_same_order(
    tmp_path: Path, kafka_bootstrap: str, secret_env: str
) -> None:
    # Here the workers are forked while the Kafka producer's thread runs.
    path = write_csv(tmp_path / "tax.csv", [{**GOOD_ROWS["tax"], "payment_ref": f"PJ-{n}",
                                            "region": "450202" if n % 9 else "x"} for n in range(4500)])  # fmt: skip
    published = []
    for jobs in (1, 2):
        settings = live_settings(kafka_bootstrap, tmp_path)
        asyncio.run(ensure_topics(settings))
        run = enrollbridge("ingest", "tax", path, "--jobs", jobs, env=settings.as_environment())
        assert run.returncode == 0, run.stderr
        published.append(_topics(settings))
    assert len(published[0][0]) == 4000 and len(published[0][1]) == 500
    assert published[1] == published[0]


@pytest.mark.kafka
def test_a_bad_byte_after_the_first_mib_publishes_nothing(
    tmp_path: Path, kafka_env: tuple[Settings, dict[str, str]]
) -> None:
    settings, env = kafka_env
    run = enrollbridge("ingest", "tax", _big_file_with_a_bad_byte_after_the_first_mib(tmp_path), env=env)
    _refused(run, ":12002: not valid utf-8")
    assert _topics(settings) == ([], [])


@pytest.mark.parametrize("shown", [STUDENT, STUDENT.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))])
def test_an_identity_number_in_a_header_is_masked_in_the_summary(tmp_path: Path, secret_env: str, shown: str) -> None:
    # A data row pasted above the header: its identity number becomes a column name the summary lists.
    header = [*GOOD_ROWS["tax"], shown]
    source = write_csv(tmp_path / "tax.csv", [{**GOOD_ROWS["tax"], shown: "x"}], header)
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl")
    assert run.returncode == 0, run.stderr
    assert "ignored columns: 110105********002X" in run.stdout
    assert shown not in run.stdout + run.stderr and STUDENT not in run.stdout + run.stderr
