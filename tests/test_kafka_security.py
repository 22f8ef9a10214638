"""Kafka security settings reach every client, and wrong credentials fail fast with a clear message.

The refusing path runs against the embedded Tansu started with ``--authentication``. The accepting
path needs a broker that has a SCRAM user, which Tansu's memory store cannot create once
authentication is on (and its TLS listener did not answer a TLS client in our tries): that test runs
where ``ENROLLBRIDGE_TEST_SASL_BOOTSTRAP``, ``..._USERNAME`` and ``..._PASSWORD`` name one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from infra.broker import EmbeddedBroker, free_port
from infra.kafka import aiokafka_options, kafka_python_options
from infra.readback import read_topic
from infra.settings import Settings
from infra.topics import Topics
from streams.live.faust_app import faust_credentials
from tests.cli import enrollbridge
from tests.files import GOOD_ROWS, write_csv

PASSWORD = "not-the-password-7f3a"
REFUSED = "did not accept user 'mallory' with SCRAM-SHA-512"


@pytest.fixture(scope="module")
def guarded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("tansu") / "broker.log", authentication=True) as broker:
        yield broker.bootstrap_servers


def _env(bootstrap: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if "BOOTSTRAP" not in k}
    return {
        **base,
        "ENROLLBRIDGE_BOOTSTRAP_SERVERS": bootstrap,
        "ENROLLBRIDGE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ENROLLBRIDGE_SASL_MECHANISM": "SCRAM-SHA-512",
        "ENROLLBRIDGE_SASL_USERNAME": "mallory",
        "ENROLLBRIDGE_SASL_PASSWORD": PASSWORD,
        "ENROLLBRIDGE_SECRET": "test-secret",
        **extra,
    }


def _run_briefly(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int | None, str, float]:
    """Run a long-lived command; it must stop by itself (it fails) well within the time allowed."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "enrollbridge", *command], env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output, time.monotonic() - started
    return process.returncode, output, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [["worker", "--store", "memory", "--web-port", "FREE"], ["sink"], ["dashboard", "--dashboard-port", "0"],
     ["archive", "--out", "archive", "--wait", "1"], ["http-source", "--http-port", "0"]],
    ids=lambda command: command[0],
)  # fmt: skip
def test_wrong_credentials_stop_every_command_with_a_clear_message(
    guarded_broker: str, tmp_path: Path, command: list[str]
) -> None:
    env = _env(
        guarded_broker, ENROLLBRIDGE_PG_DSN="postgresql://postgres@127.0.0.1:5432/test",
        ENROLLBRIDGE_HTTP_TOKENS="tax=" + "t" * 24,
    )  # fmt: skip
    # The worker refuses port 0 (its status page must be findable): give it a free one.
    command = [str(free_port()) if part == "FREE" else part for part in command]
    code, output, seconds = _run_briefly(command, env, tmp_path)
    assert code == 2, output
    assert REFUSED in output and "Traceback" not in output
    assert PASSWORD not in output
    assert seconds < 45


def test_ingest_with_wrong_credentials_fails_fast(guarded_broker: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    run = enrollbridge("ingest", "tax", source, env=_env(guarded_broker), timeout=60)
    assert run.returncode == 2
    assert REFUSED in run.stderr and PASSWORD not in run.stdout + run.stderr


def test_a_plaintext_client_is_told_what_to_set(guarded_broker: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    run = enrollbridge("ingest", "tax", source, env=_env(guarded_broker, ENROLLBRIDGE_SECURITY_PROTOCOL="PLAINTEXT"))
    assert run.returncode == 2
    assert "set ENROLLBRIDGE_SECURITY_PROTOCOL" in run.stderr


def test_security_settings_reach_every_kind_of_client(tmp_path: Path) -> None:
    import ssl

    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem", "-out", ca,
         "-days", "1", "-subj", "/CN=enrollbridge-test-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = Settings(
        bootstrap_servers="k1:9093,k2:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc", sasl_password=SecretStr("pw"), ssl_cafile=ca,
    )  # fmt: skip
    for options in (aiokafka_options(settings), kafka_python_options(settings)):
        assert options["security_protocol"] == "SASL_SSL" and options["bootstrap_servers"] == ["k1:9093", "k2:9093"]
        assert options["sasl_mechanism"] == "SCRAM-SHA-256" and options["sasl_plain_username"] == "svc"
        assert options["sasl_plain_password"] == "pw"
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
        assert any("enrollbridge-test-ca" in str(c.get("subject")) for c in context.get_ca_certs())
    credentials = faust_credentials(settings)
    assert credentials.mechanism.value == "SCRAM-SHA-256" and credentials.username == "svc"
    assert "pw" not in repr(settings) and "pw" not in str(settings.model_dump())


@pytest.mark.skipif(
    not os.environ.get("ENROLLBRIDGE_TEST_SASL_BOOTSTRAP"),
    reason="needs a broker with a SCRAM user: ENROLLBRIDGE_TEST_SASL_BOOTSTRAP, _USERNAME, _PASSWORD",
)
def test_the_right_credentials_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = os.environ["ENROLLBRIDGE_TEST_SASL_BOOTSTRAP"]
    prefix = f"sasl{os.getpid()}"
    env = _env(
        bootstrap, ENROLLBRIDGE_SASL_USERNAME=os.environ["ENROLLBRIDGE_TEST_SASL_USERNAME"],
        ENROLLBRIDGE_SASL_PASSWORD=os.environ["ENROLLBRIDGE_TEST_SASL_PASSWORD"], ENROLLBRIDGE_TOPIC_PREFIX=prefix,
        ENROLLBRIDGE_SASL_MECHANISM=os.environ.get("ENROLLBRIDGE_TEST_SASL_MECHANISM", "SCRAM-SHA-512"),
        ENROLLBRIDGE_SECURITY_PROTOCOL=os.environ.get("ENROLLBRIDGE_TEST_SASL_PROTOCOL", "SASL_PLAINTEXT"),
    )  # fmt: skip
    source = write_csv(tmp_path / "tax.csv", [GOOD_ROWS["tax"]])
    run = enrollbridge("ingest", "tax", source, env=env)
    assert run.returncode == 0, run.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()

    async def payments() -> int:
        return len([r async for r in read_topic(settings, Topics(prefix).source("tax"))])

    assert asyncio.run(payments()) == 1
