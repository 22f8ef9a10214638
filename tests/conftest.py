from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

TEST_SECRET = "enrollbridge-test-secret"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """ENROLLBRIDGE_SECRET set for the test (and its subprocesses)."""
    monkeypatch.setenv("ENROLLBRIDGE_SECRET", TEST_SECRET)
    return TEST_SECRET


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no client library, no socket, no daemon: all mean "no Docker here"
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka-compatible broker: KAFKA_BOOTSTRAP_SERVERS if set, else a testcontainers Kafka where
    Docker answers, else the embedded Tansu."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from enrollbridge.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers
