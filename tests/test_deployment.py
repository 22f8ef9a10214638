"""docker-compose.yml agrees with the code: every enrollbridge service runs a real command with real
options, every ENROLLBRIDGE_* variable it (or .env.example) sets is one the settings read, and the
Kafka cluster is laid out for production. Where a Docker engine answers, a marked test brings it up."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from enrollbridge.cli import cli
from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if service.get("build") == "."}
# Read outside Settings: the pseudonymisation key (connectors.identity) and the test-only variables.
OTHER_VARIABLES = {"ENROLLBRIDGE_SECRET"}


def _known_variables() -> set[str]:
    return {f"ENROLLBRIDGE_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_every_enrollbridge_service_runs_a_real_command_with_real_options() -> None:
    assert set(OURS) >= {"worker-1", "worker-2", "http-source", "sink", "dashboard"}
    for name, service in OURS.items():
        command_name, *arguments = service["command"]
        command = cli.commands.get(command_name)
        assert isinstance(command, click.Command), f"{name}: no command {command_name!r}"
        options = {opt for param in command.params for opt in param.opts}
        for argument in arguments:
            if argument.startswith("--"):
                assert argument in options, f"{name}: {command_name} has no option {argument}"
        assert "healthcheck" in service, f"{name} has no health check"


def test_every_variable_set_is_one_the_settings_read() -> None:
    known = _known_variables()
    for name, service in OURS.items():
        for variable in service.get("environment", {}):
            assert variable in known, f"{name} sets {variable}, which nothing reads"
    example = _env_example()
    for variable in example:
        if variable.startswith("ENROLLBRIDGE_"):
            assert variable in known, f".env.example sets {variable}, which nothing reads"
    # What the services need from .env is in the example.
    assert {"ENROLLBRIDGE_SECRET", "ENROLLBRIDGE_HTTP_TOKENS", "ENROLLBRIDGE_DASHBOARD_TOKEN"} <= set(example)
    assert {"KAFKA_CLUSTER_ID", "POSTGRES_PASSWORD"} <= set(example)
    # And the example's values pass the settings' own validation.
    values = {k[len("ENROLLBRIDGE_") :].lower(): v for k, v in example.items() if k.startswith("ENROLLBRIDGE_")}
    values.pop("secret")
    Settings.model_validate(values)


def test_the_kafka_cluster_is_laid_out_for_production() -> None:
    brokers = {name: s for name, s in SERVICES.items() if str(s.get("image", "")).startswith("apache/kafka")}
    assert len(brokers) == 3
    node_ids = {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()}
    assert node_ids == {1, 2, 3}
    for service in brokers.values():
        environment = service["environment"]
        assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
        assert environment["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and environment["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert service["volumes"] and "healthcheck" in service
    for name, service in OURS.items():
        environment = service.get("environment", {})
        assert environment.get("ENROLLBRIDGE_REPLICATION_FACTOR") == "3", name
        assert set(environment["ENROLLBRIDGE_BOOTSTRAP_SERVERS"].split(",")) == {f"{b}:9092" for b in brokers}, name
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in COMPOSE["volumes"], f"{name}: volume {volume} not declared"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.mark.docker
@pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers here")
def test_the_deployment_comes_up_healthy(tmp_path: Path) -> None:
    env_file = ROOT / ".env"
    created = not env_file.exists()
    if created:
        shutil.copyfile(ROOT / ".env.example", env_file)
    try:
        up = subprocess.run(["docker", "compose", "up", "-d", "--build", "--wait"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, check=False)  # fmt: skip
        assert up.returncode == 0, up.stderr[-3000:]
    finally:
        subprocess.run(["docker", "compose", "down", "-v"], cwd=ROOT, capture_output=True, timeout=300, check=False)
        if created:
            env_file.unlink()
