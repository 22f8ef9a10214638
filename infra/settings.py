"""Runtime configuration, from flags and the environment (``ENROLLBRIDGE_*``).

``KAFKA_BOOTSTRAP_SERVERS`` is read too, as Kafka tooling and the test suite set it. Secrets
(SASL password, HTTP tokens) are ``SecretStr``: they never appear in a repr or a log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENROLLBRIDGE_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ENROLLBRIDGE_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list; unset = start the embedded broker.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = "enrollbridge"
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    app_id: str = "enrollbridge"
    store: Literal["rocksdb", "memory"] = "rocksdb"
    store_dir: Path = Path("enrollbridge-data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)  # Faust's web server cannot take "any free port" (0)
    policy_file: Path | None = None
    clock: Literal["wall", "off"] = Field(
        default="wall",
        description="wall: the leader worker ticks as the sources' watermarks pass each tick_interval (never beyond "
        "the wall clock); off: ticks come from elsewhere.",
    )
    tick_interval: float = Field(
        default=3600.0, gt=0, description="Seconds between wall-clock ticks (at least hourly)."
    )
    gating_sources: str = Field(
        default="education,insurance,tax",
        pattern=r"^((education|insurance|tax|hardship)(,(education|insurance|tax|hardship))*)?$",
        description="Sources whose watermarks hold the live clock back (comma-separated; empty: the wall clock alone).",
    )
    max_source_silence: float = Field(
        default=48 * 3600.0,
        gt=0,
        description="Seconds of wall time after which a gating source whose watermark has not advanced stops "
        "holding the clock back.",
    )
    session_timeout: float = Field(
        default=10.0, ge=1.0, description="Seconds before a silent worker's partitions move to another worker."
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=5000,
        description="Longest a fetch waits for new records; bounds latency per hop (Faust's own default is 1500).",
    )
    recovery_consistency_check: bool = Field(
        default=True,
        description="Faust refuses to recover a RocksDB store that is ahead of its changelog's reported end. "
        "Turn off only on a broker whose end offsets are short (the embedded Tansu); the worker does so itself "
        "when it starts the embedded broker.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    batch_size: int = Field(default=2000, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_tokens: SecretStr | None = Field(default=None, description="source=token,... for the HTTP push source.")
    http_lateness: float | None = Field(
        default=None,
        ge=0,
        description="When set, the HTTP source declares each source with a token complete up to now minus this many "
        "seconds, every minute (for feeds that send as things happen).",
    )
    http_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    http_read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a request body may take to arrive (16 MiB at 2 Mbit/s fits)."
    )
    # Accepted for configurations written before the rules took whole fetches; nothing reads it now
    # (a fetch waits at most fetch_max_wait_ms, and holds at most batch_size records).
    batch_seconds: float = Field(default=0.2, gt=0, description="No longer used (whole fetches).")
    standby_replicas: int = Field(
        default=0,
        ge=0,
        description="Standby copies of each persons-table partition kept by other workers (Faust's "
        "table_standby_replicas). A standby reads every state change of the partition it shadows "
        "through Faust's per-record path, which cost a second worker as much as its own rules; "
        "without one, a worker taking a partition over recovers it from the changelog.",
    )
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8050, ge=0, le=65535)
    dashboard_token: SecretStr | None = Field(default=None, description="Login token of the dashboard.")
    dashboard_secure_cookie: bool = Field(
        default=False,
        description="Mark the session cookie Secure (the dashboard is behind TLS); it also is when a request "
        "arrives with X-Forwarded-Proto: https.",
    )
    dashboard_session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="Lifetime of a login.")
    pg_dsn: SecretStr | None = Field(default=None, description="PostgreSQL connection string for the sink.")
    pg_schema: str = Field(default="enrollbridge", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    @property
    def gating(self) -> tuple[str, ...]:
        return tuple(source for source in self.gating_sources.split(",") if source)

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in (self.bootstrap_servers or "").split(",") if server.strip()]

    def as_environment(self) -> dict[str, str]:
        """These settings as ``ENROLLBRIDGE_*`` variables, for a worker started in its own process.
        Secrets are included (the child needs them); never log this mapping."""
        environment = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = str(value).lower()
            environment[f"ENROLLBRIDGE_{name.upper()}"] = str(value)
        return environment
