"""One place that turns Settings into options for every Kafka client the project creates:
aiokafka (producers, consumers, admin), kafka-python (the synchronous ingest) and Faust."""

from __future__ import annotations

import ssl
from typing import Any

from enrollbridge.settings import Settings


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


def faust_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` for the configured security protocol (None for PLAINTEXT)."""
    import faust

    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username, password=password, ssl_context=context, mechanism=settings.sasl_mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
