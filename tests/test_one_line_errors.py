"""Mistakes an operator makes get one line naming what is wrong and exit code 2, never a traceback
(and never a password)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import psycopg
import pytest

from infra.errors import InputError
from schemas.codec import to_json_line, write_event_container
from streams.core.clock import make_tick
from streams.core.policy import load_policies
from tests.cli import enrollbridge
from tests.conftest import PG_DSN
from tests.files import GOOD_ROWS, write_csv
from tests.support import registration, roster
from tests.test_policy import SPEC_EXAMPLE, write


def _one_line(run: object, *expected: str) -> None:
    returncode, stderr = run.returncode, run.stderr  # type: ignore[attr-defined]
    assert returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0], stderr


def test_an_unknown_encoding_is_named(tmp_path: Path, secret_env: str) -> None:
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl", "--encoding", "klingon")
    _one_line(run, "--encoding", "klingon")
    assert not (tmp_path / "events.jsonl").exists()


@pytest.mark.parametrize("name", ["missing.jsonl", "a-folder"])
def test_a_replay_input_that_is_not_a_file_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / "a-folder").mkdir()
    run = enrollbridge("replay", tmp_path / name, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, name)
    assert not (tmp_path / "alerts.jsonl").exists()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_web_port_0_is_refused(how: str) -> None:
    # Faust cannot serve on "any free port": refused before an embedded broker is even started.
    if how == "flag":
        run = enrollbridge("worker", "--web-port", "0", timeout=60)
    else:
        run = enrollbridge("worker", env={"ENROLLBRIDGE_WEB_PORT": "0"}, timeout=60)
    _one_line(run, "web", "port")
    assert "embedded" not in run.stderr


@pytest.mark.parametrize("contribution", ['"NaN"', '"Infinity"', '"-Infinity"', "1e9999", "nan", '"1e9999"'])
def test_a_contribution_that_is_not_an_amount_is_refused(tmp_path: Path, contribution: str) -> None:
    policy = write(tmp_path, SPEC_EXAMPLE.replace('"380.00"', contribution))
    events = tmp_path / "events.jsonl"
    events.write_text("")
    run = enrollbridge("replay", events, "--policy", policy, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, "[[policy]] #1 (pool 450200, year 2024): contribution")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("coverage_year = 2024", "coverage_year = -2024"), "coverage_year"),
        (("coverage_year = 2024", "coverage_year = 0"), "coverage_year"),
        (("# checkpoints = [", 'checkpoints = ["2031-12-31"]\n#'), "checkpoints 2031-12-31 outside"),
        (("# checkpoints = [", 'checkpoints = ["2023-10-31", "0001-01-01"]\n#'), "checkpoints 0001-01-01 outside"),
        (('collection_end = "2023-12-31"', 'collection_end = "9999-12-31"'), "collection_end 9999-12-31 outside"),
    ],
)
def test_policies_outside_their_collection_years_are_refused(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert change[0] in SPEC_EXAMPLE
    with pytest.raises(InputError, match=message):
        load_policies(write(tmp_path, SPEC_EXAMPLE.replace(*change)))


def test_a_checkpoint_in_the_coverage_year_itself_is_kept(tmp_path: Path) -> None:
    # A city may collect into January: a checkpoint there is no typo.
    text = SPEC_EXAMPLE.replace("# checkpoints = [", 'checkpoints = ["2023-12-31", "2024-01-31"]\n#')
    policy = load_policies(write(tmp_path, text)).get("450200", 2024)
    assert policy is not None and len(policy.checkpoints) == 2


@pytest.mark.parametrize("name", ['柳州 "test"', "back\\slash", "line\nbreak", "tab\tand \x7f", "😀"])
def test_a_policy_name_with_quotes_stays_valid_toml(tmp_path: Path, name: str) -> None:
    policy = load_policies(write(tmp_path, SPEC_EXAMPLE)).get("450200", 2024)
    assert policy is not None
    named = policy.model_copy(update={"name": name})
    text = named.to_toml()
    assert tomllib.loads(text)["policy"][0]["name"] == name
    again = load_policies(write(tmp_path, text)).get("450200", 2024)
    assert again == named


def test_synth_writes_a_policy_file_that_reads_back(tmp_path: Path, secret_env: str) -> None:
    policy = load_policies(write(tmp_path, SPEC_EXAMPLE)).get("450200", 2024)
    assert policy is not None
    named = tmp_path / "named.toml"
    named.write_text(policy.model_copy(update={"name": 'Liuzhou "city"'}).to_toml(), encoding="utf-8")
    run = enrollbridge(
        "synth", "--pool", "450200", "--year", "2024", "--students", "5", "--policy", named, "--out", tmp_path / "s"
    )
    assert run.returncode == 0, run.stderr
    assert load_policies(tmp_path / "s" / "policy.toml").get("450200", 2024) is not None


@pytest.mark.parametrize(
    "dsn",
    [
        'postgresql://clerk:hunter2"secret@[::1',  # libpq quotes a malformed URI whole
        "postgresql://clerk:hunter2%zzsecret@127.0.0.1/test",  # ... and the token around a bad escape
        "host=127.0.0.1 password='hunter2secret",
        "host=127.0.0.1 port=abc password=hunter2secret",
        "postgresql://clerk:hunter2secret@127.0.0.1:5432/test?sslmode=bogus",
    ],
)
@pytest.mark.parametrize("command", ["worklist", "report", "sink"])
def test_a_malformed_dsn_is_one_line_without_the_password(tmp_path: Path, dsn: str, command: str) -> None:
    commands: dict[str, list[str | Path]] = {
        "worklist": ["worklist", "--out", tmp_path / "lists"],
        "report": ["report", "--pool", "450200", "--year", "2024", "--as-of", "2023-10-31", "--out", tmp_path],
        "sink": ["sink", "--bootstrap-servers", "127.0.0.1:9"],
    }
    args = commands[command]
    run = enrollbridge(*args, env={"ENROLLBRIDGE_PG_DSN": dsn}, timeout=60)
    _one_line(run, "PostgreSQL")  # the sink too: its connection comes before Kafka's
    assert "hunter2" not in run.stderr + run.stdout


@pytest.mark.parametrize("command", ["worklist", "report"])
def test_postgresql_refusing_is_one_line(tmp_path: Path, command: str) -> None:
    from infra.broker import free_port

    commands: dict[str, list[str | Path]] = {
        "worklist": ["worklist", "--out", tmp_path / "lists"],
        "report": ["report", "--pool", "450200", "--year", "2024", "--as-of", "2023-10-31", "--out", tmp_path],
    }
    args = commands[command]
    dsn = f"postgresql://clerk:hunter2@127.0.0.1:{free_port()}/test"  # nobody listens there
    run = enrollbridge(*args, env={"ENROLLBRIDGE_PG_DSN": dsn}, timeout=60)
    _one_line(run, "cannot connect to PostgreSQL", "refused")
    assert "hunter2" not in run.stderr
    assert not (tmp_path / "lists").exists()


def test_worklist_of_a_schema_that_does_not_exist_creates_nothing(tmp_path: Path, pg_schema: str) -> None:
    run = enrollbridge(
        "worklist", "--out", tmp_path / "lists", "--pg-schema", pg_schema, env={"ENROLLBRIDGE_PG_DSN": PG_DSN}
    )
    _one_line(run, f"PostgreSQL schema {pg_schema!r} holds no enrollbridge sink tables")
    with psycopg.connect(PG_DSN) as connection:
        found = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)).fetchone()
    assert found is None


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_replay_given_an_agency_file_says_what_it_reads(tmp_path: Path, suffix: str) -> None:
    if suffix == ".csv":
        agency = write_csv(tmp_path / "education.csv", [GOOD_ROWS["education"]])
    else:
        agency = tmp_path / "education.jsonl"
        agency.write_text('{"id_number": "11010520000101001X", "school_code": "S1"}\n')
    run = enrollbridge("replay", agency, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, f"{agency}:1", "ingest SOURCE FILE --out EVENTS.jsonl")


@pytest.mark.parametrize("option", ["--out", "--coverage-out"])
def test_a_replay_output_in_a_missing_folder_is_named(tmp_path: Path, option: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    outputs = {"--out": tmp_path / "alerts.jsonl", "--coverage-out": tmp_path / "coverage.jsonl"}
    outputs[option] = tmp_path / "missing" / "out.jsonl"
    run = enrollbridge("replay", events, *(part for pair in outputs.items() for part in pair))
    _one_line(run, "cannot write", str(tmp_path / "missing" / "out.jsonl"))


@pytest.mark.parametrize("command", ["replay", "ingest"])
def test_an_output_whose_folder_is_a_file_is_named(tmp_path: Path, secret_env: str, command: str) -> None:
    # Opening it fails with NotADirectoryError, and so did cleaning up the partial files after it.
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    events = tmp_path / "events.jsonl"
    events.write_text("")
    inputs: list[str | Path] = ["replay", events] if command == "replay" else ["ingest", "tax", source]
    run = enrollbridge(*inputs, "--out", source / "out.jsonl")
    _one_line(run, "cannot write", str(source / "out.jsonl"))


@pytest.mark.parametrize("option", ["--out", "--coverage-out"])
def test_a_replay_output_that_is_an_input_is_refused_before_it_is_overwritten(tmp_path: Path, option: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "ClockTick"}\n')
    outputs = {"--out": tmp_path / "alerts.jsonl", "--coverage-out": tmp_path / "coverage.jsonl"}
    outputs[option] = tmp_path / "." / "events.jsonl"  # the same file by another name
    run = enrollbridge("replay", events, *(part for pair in outputs.items() for part in pair))
    _one_line(run, option, "is also an input")
    assert events.read_text() == '{"type": "ClockTick"}\n'


@pytest.mark.parametrize("option", ["--out", "--dlq"])
def test_an_ingest_output_that_is_the_agency_file_is_refused(tmp_path: Path, secret_env: str, option: str) -> None:
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    before = source.read_bytes()
    outputs = {"--out": tmp_path / "events.jsonl", "--dlq": tmp_path / "dead.jsonl"}
    outputs[option] = source
    run = enrollbridge("ingest", "tax", source, *(part for pair in outputs.items() for part in pair))
    _one_line(run, option, "is also an input")
    assert source.read_bytes() == before


def test_an_ingest_dead_letter_file_that_is_the_event_file_is_refused(tmp_path: Path, secret_env: str) -> None:
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    events = tmp_path / "events.jsonl"
    run = enrollbridge("ingest", "tax", source, "--out", events, "--dlq", events)
    _one_line(run, "--dlq", "is also --out")
    assert not events.exists()


def _damaged_log(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A log container of a year of hourly ticks (several blocks) with bytes flipped inside a block."""
    with path.open("wb") as out:
        write_event_container(out, [make_tick(1_700_000_000_000 + hour * 3_600_000) for hour in range(9000)], metadata)
    data = bytearray(path.read_bytes())
    for at in range(len(data) * 4 // 5, len(data) * 4 // 5 + 40):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("segment", [False, True])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_damaged_avro_block_is_named(tmp_path: Path, segment: bool, jobs: str) -> None:
    metadata = {"enrollbridge.partition": "0", "enrollbridge.first_offset": "0"} if segment else None
    log = _damaged_log(tmp_path / "log.avro", metadata)
    run = enrollbridge("replay", log, "--out", tmp_path / "alerts.jsonl", "--jobs", jobs)
    _one_line(run, f"{log}: not a readable Avro container of events")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_avro_record_the_contract_refuses_is_named_by_its_number_and_field(tmp_path: Path, jobs: str) -> None:
    # Written by another producer: a registration of a year no agency record may carry, and a tick
    # whose China Standard Time date is in year 10000 (fastavro reads it; no instant can show it).
    late = make_tick(1_700_000_000_000).model_copy(update={"occurred_at": 253_402_286_400_000})
    year = registration("ann", "2023-09-06T08:00", "E1").model_copy(update={"coverage_year": 2101})
    for bad, field in ((year, "coverage_year"), (late, "occurred_at")):
        log = tmp_path / f"{field}.avro"
        with log.open("wb") as out:
            write_event_container(out, [make_tick(1_690_000_000_000), bad])
        run = enrollbridge("replay", log, "--out", tmp_path / "alerts.jsonl", "--jobs", jobs)
        _one_line(run, f"{log}: record 2: field {field}")


def test_a_damaged_header_among_log_segments_is_named(tmp_path: Path) -> None:
    segment = tmp_path / "segment.avro"
    with segment.open("wb") as out:
        write_event_container(out, [make_tick(1_700_000_000_000)], {"enrollbridge.partition": "0"})
    damaged = tmp_path / "damaged.avro"
    damaged.write_bytes(segment.read_bytes()[:20])
    run = enrollbridge("replay", segment, damaged, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, f"{damaged}: not a readable Avro container")


def test_a_replay_stopped_by_a_bad_record_leaves_no_half_output(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    good = [to_json_line(roster(f"student {number}", "2023-09-05T08:00")) for number in range(3)]
    events.write_bytes(b"\n".join([*good, b'{"type": "RosterChange"}']) + b"\n")
    alerts, coverage = tmp_path / "alerts.jsonl", tmp_path / "coverage.jsonl"
    alerts.write_text("an earlier replay's alerts\n")
    run = enrollbridge("replay", events, "--until", "2023-10-01", "--out", alerts, "--coverage-out", coverage)
    _one_line(run, f"{events}:4:")
    assert alerts.read_text() == "an earlier replay's alerts\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alerts.jsonl", "events.jsonl"]
    # Without the bad record, the same replay writes both files whole.
    events.write_bytes(b"\n".join(good) + b"\n")
    run = enrollbridge("replay", events, "--until", "2023-10-01", "--out", alerts, "--coverage-out", coverage)
    assert run.returncode == 0, run.stderr
    assert alerts.read_text().count("UNENROLLED") == 3 and coverage.read_text().count("\n") >= 3


def test_a_replay_output_that_is_the_policy_file_is_refused(tmp_path: Path) -> None:
    policy = write(tmp_path, SPEC_EXAMPLE)
    events = tmp_path / "events.jsonl"
    events.write_text("")
    run = enrollbridge("replay", events, "--policy", policy, "--out", policy)
    _one_line(run, "--out", "is also an input")
    assert policy.read_text() == SPEC_EXAMPLE


@pytest.mark.parametrize("name", ["enrollbridge.partition", "enrollbridge.first_offset"])
def test_a_log_segment_whose_header_numbers_are_not_numbers_is_named(tmp_path: Path, name: str) -> None:
    log = tmp_path / "segment.avro"
    with log.open("wb") as out:
        metadata = {"enrollbridge.partition": "0", "enrollbridge.first_offset": "0", name: "zero"}
        write_event_container(out, [make_tick(1_700_000_000_000)], metadata)
    run = enrollbridge("replay", log, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, f"{log}: not a log segment", name)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_a_time_whose_china_date_has_no_year_is_a_dead_letter_not_a_traceback(
    tmp_path: Path, secret_env: str, text: str
) -> None:
    # Valid ISO 8601, but in China Standard Time the year is 10000 or 0: no instant could show it.
    source = write_csv(tmp_path / "tax.csv", [{**GOOD_ROWS["tax"], "occurred_at": text}])
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl")
    assert run.returncode == 0, run.stderr
    assert "read 1, accepted 0, rejected 1" in run.stdout
    assert '"error_code":"BAD_TIME"' in (tmp_path / "events.dlq.jsonl").read_text()
    events = tmp_path / "events.jsonl"
    replayed = enrollbridge("replay", events, "--until", text, "--out", tmp_path / "alerts.jsonl")
    _one_line(replayed, "--until", text)


@pytest.mark.parametrize("year", ["99999999", "-5", "0"])
def test_an_event_of_a_coverage_year_no_record_may_carry_is_named(tmp_path: Path, secret_env: str, year: str) -> None:
    events = tmp_path / "events.jsonl"
    ingested = enrollbridge("ingest", "tax", write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]]), "--out", events)
    assert ingested.returncode == 0, ingested.stderr
    line = events.read_text()
    assert '"coverage_year":2024,' in line
    events.write_text(line.replace('"coverage_year":2024,', f'"coverage_year":{year},'))
    run = enrollbridge("replay", events, "--out", tmp_path / "alerts.jsonl")
    _one_line(run, f"{events}:1: field coverage_year")


def test_a_report_as_of_the_last_day_a_date_can_hold_is_refused(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    args: list[str | Path] = [
        "report",
        "--pool",
        "450200",
        "--year",
        "2024",
        "--as-of",
        "9999-12-31",
        events,
        "--out",
        tmp_path,
    ]
    _one_line(enrollbridge(*args), "--as-of '9999-12-31'")
    assert list(tmp_path.iterdir()) == [events]


@pytest.mark.parametrize("command", ["worklist", "report", "synth", "demo", "live demo"])
def test_an_output_folder_that_cannot_be_made_is_named(tmp_path: Path, secret_env: str, command: str) -> None:
    # A folder inside a file stands for any folder that cannot be written (read-only, another
    # user's), also when the tests run as root.
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("")
    out = tmp_path / "inputs.jsonl" / "lists"
    if command == "worklist":
        run = enrollbridge("worklist", inputs, "--out", out)
    elif command == "synth":
        run = enrollbridge("synth", "--pool", "450200", "--year", "2024", "--students", "10", "--out", out)
    elif command == "demo":
        run = enrollbridge("demo", "--offline", "--students", "10", "--out", out)
    elif command == "live demo":  # stopped before any broker or worker starts
        run = enrollbridge("demo", "--exit", "--students", "10", "--out", out)
    else:
        run = enrollbridge(
            "report", "--pool", "450200", "--year", "2024", "--as-of", "2023-10-31", inputs, "--out", out
        )
    _one_line(run, "cannot write", str(out))
    assert inputs.read_text() == ""
