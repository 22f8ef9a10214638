"""What one batch of the rules agent sends, as one Kafka record batch per topic partition.

aiokafka's ``send`` costs a coroutine, a future and an accumulator lookup per message, and the
agent sends about three messages per event (alert transitions, coverage changes, state changes),
each to a partition it already knows. So it fills record batches itself (aiokafka's
``create_batch`` / ``send_batch``) and waits for one acknowledgement per record batch. Within a
topic partition, messages keep the order in which they were added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

Headers = Sequence[tuple[str, bytes]]


class Outbox:
    def __init__(self, producer: Any) -> None:
        """Sends through a started aiokafka producer (the worker's: its transport's, not a second one)."""
        self._producer = producer
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) -> BatchBuilder being filled
        self._submitted: list[asyncio.Future[Any]] = []

    async def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                  headers: Headers = ()) -> None:  # fmt: skip
        slot = (topic, partition)
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is not None:
            return
        await self._submit(slot)  # full: send it, start the next one
        batch = self._open[slot] = self._producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
            raise ValueError(f"a message of {len(value or b'')} bytes does not fit in a record batch of {topic}")

    async def flush(self) -> None:
        """Send every batch still being filled and wait until the broker has acknowledged them all."""
        for slot in list(self._open):
            await self._submit(slot)
        submitted, self._submitted = self._submitted, []
        await asyncio.gather(*submitted)

    async def _submit(self, slot: tuple[str, int]) -> None:
        topic, partition = slot
        batch = self._open.pop(slot)
        self._submitted.append(await self._producer.send_batch(batch, topic, partition=partition))
