"""Where a replay's time goes, stage by stage, in CPU time per record (BENCHMARKS.md, "The core").

    python -m enrollbridge.bench.stages POLICY.toml LOG.avro... [--runs N]

LOG.avro... are the files of a unified log: one stream, or an archive's partition segments, such as
those ``enrollbridge bench --work DIR`` leaves in DIR/log (with DIR/bench-policy.toml). Each stage is
timed alone with ``time.process_time()``, which moves far less than wall time when other work shares
the machine; the medians of ``--runs`` runs are printed:

- fastavro reading the files (the replay row's baseline);
- reading it into the contract's event models (``read_event_container``);
- the engine over those events (the rules, alert records built, nothing written), and two parts of its
  work that are not rules: folding the events into person states, and building the alert records it
  emitted (per event). With reading, they are a floor under a replay's cost whatever the rules cost;
- encoding the alert records as topic messages, and decoding the events' messages (the live worker's
  share of Avro per record).

To time an earlier commit C the same way, run this file by its path with that commit's tree first on
the path: ``git archive C | tar -x -C /tmp/c && PYTHONPATH=/tmp/c python enrollbridge/bench/stages.py ...``
(run it from outside the clone, so the clone's own packages are not found first).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from itertools import chain, islice
from pathlib import Path

import click
import fastavro

from schemas.codec import LOG_EVENT_NAMES, decode_message, encode_message, read_event_container, trusted_record
from schemas.models import AlertDetails, AlertRecord, Event, RegistrationRef, SourceEvent
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import load_policies
from streams.core.state import PersonState
from streams.replay import log_streams


def _per_record(work: Callable[[], int]) -> float:
    """CPU microseconds per record of one call of ``work``, which returns how many records it handled."""
    started = time.process_time()
    count = work()
    return (time.process_time() - started) / max(count, 1) * 1e6


def measure(logs: list[Path], policy: Path) -> dict[str, float]:
    """The stages over the files of a log: one stream, or an archive's segments, grouped into
    partition streams as a replay groups them (each stream through its own engine)."""
    policies = load_policies(policy)
    grouped = [files for _, files in log_streams(logs)]
    logs = [path for files in grouped for path in files]  # streams in order, one after another
    ends = {files[-1] for files in grouped}  # where a stream ends and the next engine starts

    def fastavro_reads() -> int:
        count = 0
        for log in logs:
            with log.open("rb") as source:
                count += sum(1 for _ in fastavro.reader(source))
        return count

    streams: list[list[Event]] = []

    def read_models() -> int:
        streams.clear()
        stream: list[Event] = []
        for log in logs:
            with log.open("rb") as source:
                stream.extend(read_event_container(source))
            if log in ends:
                streams.append(stream)
                stream = []
        return sum(map(len, streams))

    alerts: list[AlertRecord] = []

    def run_engine() -> int:
        for events in streams:
            engine = Engine(policies, MemoryStore())
            for event in events:
                alerts.extend(engine.process(event))  # type: ignore[arg-type]
        return sum(map(len, streams))

    def encode_alerts() -> int:
        for alert in alerts:
            encode_message(alert)
        return len(alerts)

    def fold_states() -> int:
        states: dict[str, PersonState] = {}
        for event in chain.from_iterable(streams):
            if isinstance(event, SourceEvent):
                state = states.get(event.person_key)
                if state is None:
                    state = states[event.person_key] = PersonState(event.masked_id)
                state.apply(event)
        return sum(map(len, streams))

    def build_alerts() -> int:
        for alert in alerts:
            _rebuilt(alert)
        return sum(map(len, streams))  # per event: what building the records costs a replay

    figures = {
        "fastavro reads the log": _per_record(fastavro_reads),
        "read into event models": _per_record(read_models),
        "engine (rules, alert records built)": _per_record(run_engine),
        "  of which: fold into person states": _per_record(fold_states),
        "  of which: build the alert records": _per_record(build_alerts),
        "encode an alert message": _per_record(encode_alerts),
    }
    messages = [encode_message(event) for event in islice(chain.from_iterable(streams), 30_000)]

    def decode_events() -> int:
        for message in messages:
            decode_message(message, LOG_EVENT_NAMES)
        return len(messages)

    figures["decode an event message"] = _per_record(decode_events)
    return figures


def _rebuilt(alert: AlertRecord) -> AlertRecord:
    """An alert record built again from its values the way the rules build it (``trusted_record``)."""
    details = alert.details
    refs = tuple(trusted_record(RegistrationRef, **ref.__dict__) for ref in details.registrations)
    rebuilt = trusted_record(AlertDetails, **{**details.__dict__, "registrations": refs})
    return trusted_record(AlertRecord, **{**alert.__dict__, "details": rebuilt})


@click.command()
@click.argument("policy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True)
def main(policy: Path, logs: tuple[Path, ...], runs: int) -> None:
    """CPU microseconds per record of each stage of a replay of LOGS, medians of RUNS runs."""
    results = []
    with click.progressbar(range(runs), label="measuring", file=click.get_text_stream("stderr")) as bar:
        for _ in bar:
            results.append(measure(list(logs), policy))
    for stage in results[0]:
        values = [result[stage] for result in results]
        spread = f" ({min(values):.1f}–{max(values):.1f})" if runs > 1 else ""
        click.echo(f"{stage:<40} {statistics.median(values):7.1f} µs{spread}")


if __name__ == "__main__":
    main()
