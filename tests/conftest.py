from __future__ import annotations

import itertools
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
    from infra.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


_PG_NAMES = itertools.count()
PG_DSN = os.environ.get("ENROLLBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test (the real server: ENROLLBRIDGE_TEST_PG_DSN, default the
    local one), dropped afterwards."""
    import psycopg

    name = f"t_{os.getpid()}_{next(_PG_NAMES)}"

    def drop() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    drop()  # before too: a run that was killed left its schemas, and a later process can have its pid
    yield name
    drop()
