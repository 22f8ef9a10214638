"""The worker's consumer takes the unified log a fetch at a time (``streams.live.faust_app._with_consumer``).

No broker: Faust's fetch (``_wait_next_records``) is replaced by one that returns given records, and
what the consumer then does -- hand them over by partition, acknowledge them only once the handler
returned, leave other topics to Faust, wait for a fetch in hand on revocation -- is checked against
Faust's own bookkeeping (``_new_offset`` is what Faust's commit would commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import faust
import pytest
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams.live.faust_app import _with_consumer

NOWHERE = "kafka://127.0.0.1:9"  # never contacted


class Record(NamedTuple):
    offset: int
    value: bytes


def _records(partition_offsets: dict[TP, list[int]]) -> dict[TP, list[Record]]:
    return {tp: [Record(offset, b"%d" % offset) for offset in offsets] for tp, offsets in partition_offsets.items()}


def _consumer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handler: Callable[[dict[int, list[Any]]], Awaitable[None]],
    fetches: list[dict[TP, list[Record]]],
    every: int = 10_000,
) -> Any:
    app = faust.App("whole", broker=NOWHERE, store="memory://", datadir=str(tmp_path), broker_commit_every=every)
    _with_consumer(app, 100, {"log": handler})

    async def fetched(self: Any, timeout: float) -> tuple[Any, Any]:
        return fetches.pop(0), None

    monkeypatch.setattr(driver.Consumer, "_wait_next_records", fetched)
    return app.consumer


def test_a_fetch_goes_to_the_handler_by_partition_and_is_acknowledged_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[int, list[int]]] = []
    log0, log1, other = TP("log", 0), TP("log", 1), TP("other", 0)

    async def handler(fetched: dict[int, list[Any]]) -> None:
        # Nothing of this fetch is acknowledged while the handler works on it.
        assert not consumer._acked[log0] and not consumer._acked[log1]
        seen.append({partition: [r.offset for r in records] for partition, records in fetched.items()})

    consumer = _consumer(tmp_path, monkeypatch, handler, [_records({log0: [0, 1, 2], log1: [7], other: [4]})])

    async def run() -> Any:
        return await consumer._wait_next_records(1.0)

    rest, _ = asyncio.run(run())
    assert seen == [{0: [0, 1, 2], 1: [7]}]
    assert list(rest) == [other]  # left to Faust's per-message path
    assert consumer._new_offset(log0) == 3 and consumer._new_offset(log1) == 8  # what a commit would commit
    assert consumer._n_acked == 4
    assert consumer.app.monitor.stream_inbound_time[log0] > 0  # Faust's livelock check sees progress


def test_a_failing_handler_acknowledges_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def handler(fetched: dict[int, list[Any]]) -> None:
        raise RuntimeError("the broker refused the alerts")

    log0 = TP("log", 0)
    consumer = _consumer(tmp_path, monkeypatch, handler, [_records({log0: [0, 1]})])
    with pytest.raises(RuntimeError):
        asyncio.run(consumer._wait_next_records(1.0))
    assert consumer._new_offset(log0) is None and consumer._n_acked == 0
    assert consumer._idle.is_set()


def test_gaps_in_the_offsets_are_committed_over_and_records_read_again_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []

    async def handler(fetched: dict[int, list[Any]]) -> None:
        seen.extend([r.offset for r in records] for records in fetched.values())

    log0 = TP("log", 0)
    # Offsets 3 and 4 are missing (compacted, or transaction markers); the second fetch repeats 5 and 6.
    consumer = _consumer(tmp_path, monkeypatch, handler, [_records({log0: [1, 2, 5, 6]}), _records({log0: [5, 6, 7]})])

    async def run() -> None:
        await consumer._wait_next_records(1.0)
        await consumer._wait_next_records(1.0)

    asyncio.run(run())
    assert seen == [[1, 2, 5, 6], [6, 7]]  # as Faust's fetcher drops offsets below the one last read
    # Faust's gap bookkeeping may take two commits to get over a gap; then every offset is committed.
    assert list(iter(lambda: consumer._new_offset(log0), None))[-1] == 8


def test_a_fetch_during_a_revocation_is_not_handled_but_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[Any] = []
    seeks: list[bool] = []

    async def handler(fetched: dict[int, list[Any]]) -> None:
        handled.append(fetched)

    async def perform_seek(self: Any) -> None:
        seeks.append(True)

    monkeypatch.setattr(driver.Consumer, "perform_seek", perform_seek)
    consumer = _consumer(tmp_path, monkeypatch, handler, [_records({TP("log", 0): [0, 1]})])
    consumer.flow_active = False
    asyncio.run(consumer._wait_next_records(1.0))
    assert handled == [] and seeks == [True] and consumer._n_acked == 0


def test_commit_every_is_kept_and_a_revocation_waits_for_the_fetch_in_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    emptied: list[bool] = []

    async def commit(self: Any, *args: Any, **kwargs: Any) -> bool:
        commits.append(self._new_offset(TP("log", 0)))
        return True

    async def wait_empty(self: Any) -> None:
        emptied.append(True)

    monkeypatch.setattr(driver.Consumer, "commit", commit)
    monkeypatch.setattr(driver.Consumer, "wait_empty", wait_empty)
    release = asyncio.Event()

    async def handler(fetched: dict[int, list[Any]]) -> None:
        await release.wait()

    consumer = _consumer(tmp_path, monkeypatch, handler, [_records({TP("log", 0): [0, 1, 2]})], every=3)

    async def run() -> None:
        fetch = asyncio.ensure_future(consumer._wait_next_records(1.0))
        await asyncio.sleep(0.01)
        revocation = asyncio.ensure_future(consumer.wait_empty())
        await asyncio.sleep(0.01)
        assert not revocation.done() and emptied == []  # the fetch in hand is not yet durable
        release.set()
        await fetch
        await revocation
        assert emptied == [True]

    asyncio.run(run())
    assert commits == [3]  # after 3 acknowledgements (broker_commit_every), the offset after them
