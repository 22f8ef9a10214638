"""One place that turns Settings into options for every Kafka client the project creates:
aiokafka (producers, consumers, admin), kafka-python (the synchronous ingest) and Faust."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from infra.errors import InputError
from infra.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile:
        context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None)
    return context


def _sasl(settings: Settings) -> dict[str, Any]:
    if not settings.security_protocol.startswith("SASL"):
        return {}
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": password,
    }


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    return {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
        "ssl_context": ssl_context(settings),
        **_sasl(settings),
    }


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer / KafkaConsumer / KafkaAdminClient."""
    return {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
        "ssl_context": ssl_context(settings),
        **_sasl(settings),
    }


def connection_problem(settings: Settings, error: BaseException) -> InputError:
    """One clear line for a Kafka client that could not start (never the password)."""
    where = f"Kafka at {settings.bootstrap_servers}"
    name = type(error).__name__
    if isinstance(error, ssl.SSLError):
        return InputError(f"TLS with {where} failed: {error.reason or name} (check ENROLLBRIDGE_SSL_CAFILE)")
    if settings.security_protocol.startswith("SASL") and (
        isinstance(error, KeyError | ValueError) or "Sasl" in name or "Authentication" in name or "closed" in str(error)
    ):
        # A failed SCRAM exchange surfaces in aiokafka as anything from a KeyError to a closed connection.
        return InputError(
            f"{where} did not accept user {settings.sasl_username!r} with {settings.sasl_mechanism} "
            "(wrong user or password, or a mechanism the broker does not offer)"
        )
    if isinstance(error, TimeoutError):
        return InputError(f"{where} did not answer in time")
    hint = ""
    if settings.security_protocol == "PLAINTEXT":
        hint = " (is it running? if it requires TLS or authentication, set ENROLLBRIDGE_SECURITY_PROTOCOL)"
    return InputError(f"cannot reach {where}: {name}{hint}")


async def start_client(client: Any, settings: Settings, timeout: float = 30.0) -> None:
    """Start an aiokafka producer, consumer or admin client, or fail fast with a clear InputError."""
    try:
        await asyncio.wait_for(client.start(), timeout)
    except Exception as error:  # aiokafka raises many unrelated types for one failed connection
        closer = getattr(client, "stop", None) or getattr(client, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
        raise connection_problem(settings, error) from None
