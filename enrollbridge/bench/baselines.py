"""The baselines of the live measurement, each a process reading the unified log of a benchmark run:

    python -m enrollbridge.bench.baselines faust BOOTSTRAP TOPIC GROUP PARTITIONS STORE_DIR INTERVAL EVERY
    python -m enrollbridge.bench.baselines quix  BOOTSTRAP TOPIC GROUP PARTITIONS STORE_DIR INTERVAL EVERY

(a) a minimal faust-streaming agent that updates one table entry per event; (b) a minimal Quix
Streams stateful counter. Both commit their offsets, which is how the benchmark sees their progress,
every INTERVAL seconds and after EVERY messages: the terms the enrollbridge worker commits on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


def faust_counter(
    bootstrap: str, topic: str, group: str, partitions: int, store: str, interval: float, every: int
) -> Any:
    """(a), not started: a Faust app whose one agent counts the events of each key in a table."""
    import faust

    app = faust.App(
        group, broker=f"kafka://{bootstrap}", store="memory://", topic_partitions=partitions,
        datadir=store, web_enabled=False, producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest", recovery_consistency_check=False,
        broker_commit_interval=interval, broker_commit_every=every,
    )  # fmt: skip
    counts = app.Table("counts", default=int, partitions=partitions, key_type=bytes, value_type=int)
    source = app.topic(topic, key_type=bytes, value_type=bytes, partitions=partitions)

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            counts[event.key or b""] += 1

    return app


def quix_application(bootstrap: str, group: str, store: str, interval: float, every: int) -> Any:
    """(b)'s application, not yet given its topic (that asks the broker)."""
    from quixstreams import Application
    from quixstreams.models.topics.manager import TopicManager

    # Tansu's DescribeConfigs leaves out retention.ms, from which Quix derives its changelog's; default it.
    derive = TopicManager.derive_topic_config

    def with_retention(topics: Any) -> Any:
        for topic in topics:
            if topic.broker_config is not None:
                topic.broker_config.extra_config.setdefault("retention.ms", str(7 * 24 * 3600 * 1000))
        return derive(topics)

    TopicManager.derive_topic_config = staticmethod(with_retention)
    return Application(
        broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest", state_dir=store,
        loglevel="WARNING", commit_interval=interval, commit_every=every,
    )  # fmt: skip


def quix_count(app: Any, topic: str) -> None:
    """(b)'s one step: a stateful counter of the topic's events."""
    from quixstreams import State

    source = app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")

    def count(_value: bytes, state: State) -> None:
        state.set("count", state.get("count", 0) + 1)

    app.dataframe(source).update(count, stateful=True)


def main(argv: list[str]) -> None:
    kind, bootstrap, topic, group, partitions, store, interval, every = argv
    if kind == "faust":
        from streams.live.faust_app import run_faust_app

        app = faust_counter(bootstrap, topic, group, int(partitions), store, float(interval), int(every))
        # Run the way the enrollbridge worker runs, so the two differ only in what their agents do.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        run_faust_app(app, "warning", loop)
    else:
        app = quix_application(bootstrap, group, store, float(interval), int(every))
        quix_count(app, topic)
        app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
