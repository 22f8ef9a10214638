"""The command line contract (SPEC section 7): counts, exit codes and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.cli import enrollbridge
from tests.files import GOOD_ROWS, write_csv


def test_ingest_prints_counts_and_writes_events_and_dead_letters(tmp_path: Path, secret_env: str) -> None:
    rows = [GOOD_ROWS["tax"], {**GOOD_ROWS["tax"], "amount": "-1", "payment_ref": "PJ-2"}]
    source = write_csv(tmp_path / "tax.csv", rows)
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl", "--dlq", tmp_path / "dlq.jsonl")
    assert run.returncode == 0, run.stderr
    assert "tax: read 2, accepted 1, rejected 1" in run.stdout
    [event] = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    [dead] = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert event["type"] == "PaymentChange" and dead["error_code"] == "NEGATIVE_AMOUNT"


def test_dead_letters_go_beside_the_events_by_default(tmp_path: Path, secret_env: str) -> None:
    source = write_csv(tmp_path / "tax.csv", [{**GOOD_ROWS["tax"], "region": "x"}])
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl")
    assert run.returncode == 0 and (tmp_path / "events.dlq.jsonl").read_bytes().count(b"\n") == 1


@pytest.mark.parametrize(
    ("make", "needs_secret", "message"),
    [
        (lambda d: d / "absent.csv", True, "absent.csv: cannot read"),
        (lambda d: write_csv(d / "tax.csv", [{"身份证号": "x"}]), True, "tax.csv: missing columns"),
        (lambda d: write_csv(d / "tax.csv", [GOOD_ROWS["tax"]]), False, "ENROLLBRIDGE_SECRET is not set"),
    ],
)
def test_unusable_input_is_one_line_and_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: object, needs_secret: bool, message: str
) -> None:
    if needs_secret:
        monkeypatch.setenv("ENROLLBRIDGE_SECRET", "s")
    else:
        monkeypatch.delenv("ENROLLBRIDGE_SECRET", raising=False)
    source = make(tmp_path)  # type: ignore[operator]
    run = enrollbridge("ingest", "tax", source, "--out", tmp_path / "events.jsonl")
    assert run.returncode == 2
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_replay_of_a_bad_event_line_names_file_line_and_field(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "PaymentChange", "event_id": "x", "occurred_at": "2023-09-01"}\n')
    run = enrollbridge("replay", events, "--out", tmp_path / "alerts.jsonl")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{events}:1: field event_id" in run.stderr


def test_a_malformed_policy_is_named_precisely(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[policy]]\npool = "450200"\ncoverage_year = 2024\ncontribution = "-1"\n'
        'collection_start = "2023-09-01"\ncollection_end = "2023-12-31"\n'
    )
    events = tmp_path / "events.jsonl"
    events.write_text("")
    run = enrollbridge("replay", events, "--policy", policy, "--out", tmp_path / "alerts.jsonl")
    assert run.returncode == 2
    assert "[[policy]] #1 (pool 450200, year 2024): contribution" in run.stderr


def test_settings_survive_the_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A worker started in its own process must see every setting its parent had."""
    from pydantic import SecretStr

    from infra.settings import Settings

    for name in list(os.environ):
        if name.startswith("ENROLLBRIDGE_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    original = Settings(
        bootstrap_servers="a:1,b:2", clock="off", tick_interval=5.0, store="memory", store_dir=tmp_path,
        recovery_consistency_check=False, sasl_password=SecretStr("pw"), partitions=7, log_level="info",
    )  # fmt: skip
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
