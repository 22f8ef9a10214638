"""Creating the topics a deployment needs, with the configured partitions and replication."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from infra.kafka import aiokafka_options, start_client
from infra.settings import Settings
from infra.topics import Topics


async def ensure_topics(settings: Settings, topics: Topics | None = None, timeout: float = 30.0) -> None:
    """Create every missing topic; existing ones are left as they are."""
    topics = topics or Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**aiokafka_options(settings), request_timeout_ms=int(timeout * 1000))
    await start_client(admin, settings, timeout)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
            for name in topics.all()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created them meanwhile
                await admin.create_topics(wanted)
    finally:
        await admin.close()
