"""``enrollbridge bench``: every measurement of the performance issue, side by side with its baseline
in the same run on the same machine, printed as a table (ratio, target, verdict) and written to
BENCHMARKS.md.

Figures are medians of ``--runs`` runs with the min-max shown. Nothing here asserts a time: the
numbers are for people to read. ``--only`` runs some rows and prints them without touching
BENCHMARKS.md, whose table is always one whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import click
import fastavro
import orjson
from pydantic import SecretStr

from connectors.identity import Secret, person_key
from connectors.ingest import ingest_lines
from enrollbridge.bench import ROWS
from enrollbridge.demo import DEMO_POOL, DEMO_YEAR, prepare_season
from enrollbridge.live_demo import start_process, stop_processes
from enrollbridge.synth.people import IdentityFactory
from enrollbridge.synth.season import SeasonConfig, SeasonGenerator
from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker, free_port, wait_for_http
from infra.kafka import aiokafka_options, start_client
from infra.readback import committed_offsets
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message, encode_message, write_event_container
from schemas.models import AlertRecord, ClockTick, LogEvent
from schemas.times import MS_PER_DAY, parse_instant, start_of_local_day
from streams.core.clock import make_tick, tick_message
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import PolicyBook, load_policies
from streams.core.state import load_state
from streams.live.partition_store import partition_of
from streams.replay import FIRST_OFFSET_METADATA, PARTITION_METADATA, MergedLog, replay_packed

BENCH_POLICY = "bench-policy.toml"  # written in the work directory by run_bench
SECRET = Secret(b"benchmark-only-secret")
# The replay rows read the season's log as an archive of the worker's default number of partitions.
LOG_PARTITIONS: int = Settings.model_fields["partitions"].default

# Every live contender commits on the same terms, the enrollbridge worker's (streams/live/faust_app.py,
# pinned by tests/test_bench.py): every second, and after 10,000 messages (Faust's default). A rate is
# taken between commits, so a contender that commits less often would look slower on a short run.
COMMIT_INTERVAL = 1.0
COMMIT_EVERY = 10_000


@dataclass
class Row:
    """One line of the table. A target is a ratio to the baseline (``target_ratio``, at least) or a
    ceiling on our own figure (``target_max``, below); ``failure`` replaces the verdict when the
    measurement itself did not hold (records unaccounted for, a row not built yet)."""

    measurement: str
    unit: str
    ours: list[float]
    baseline_name: str = ""
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    target_ratio: float | None = None
    target_max: float | None = None
    note: str = ""
    failure: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.ours:
            return None
        return statistics.median(self.ours) / statistics.median(self.baseline)

    def verdict(self) -> str:
        if self.failure:
            return self.failure
        if self.target_ratio is not None and self.ratio is not None:
            ratio = self.ratio
            return "met" if ratio >= self.target_ratio else f"missed by {self.target_ratio / ratio:.1f}x"
        if self.target_max is not None and self.ours:
            value = statistics.median(self.ours)
            return "met" if value < self.target_max else f"missed by {value / self.target_max:.1f}x"
        return ""


def _spread(values: list[float]) -> str:
    if not values:
        return "—"
    middle = statistics.median(values)
    text = f"{middle:,.0f}" if middle >= 100 else f"{middle:,.2f}"
    if len(values) > 1:
        text += (
            f" ({min(values):,.0f}–{max(values):,.0f})" if middle >= 100 else f" ({min(values):.2f}–{max(values):.2f})"
        )
    return text


# --- offline: replay and ingest -----------------------------------------------------------------


def log_archive(
    folder: Path, merged: MergedLog, ticks: list[int], until: int, partitions: int
) -> tuple[list[Path], int]:
    """The season's unified log as an archive holds it: a segment per partition (persons routed by
    Kafka's default partitioner, as the live worker's log is; every tick in every partition), each
    with a segment's header. The files, and the records in all (ticks once per partition).

    Each segment is written from its own pass over the merged season, so memory stays flat."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, count = [], 0
    for partition in range(partitions):

        def routed(events: Iterable[LogEvent], partition: int = partition) -> Iterator[LogEvent]:
            for event in events:
                if isinstance(event, ClockTick) or partition_of(event.person_key.encode(), partitions) == partition:
                    yield event

        path = folder / f"partition-{partition}.avro"
        segment = {PARTITION_METADATA: str(partition), FIRST_OFFSET_METADATA: "0"}
        with path.open("wb") as out:
            count += write_event_container(out, routed(merged.stream(ticks, until)), segment)
        paths.append(path)
    return paths, count


def _nothing(_record: object) -> None:
    """What a replay worker hands back per record here: nothing (the one-process row keeps none either)."""


def bench_replay(logs: list[Path], count: int, policies: PolicyBook, runs: int, jobs: int) -> list[Row]:
    """``replay`` of the season's log, every alert record handed to a sink that keeps nothing, in one
    process and with ``jobs`` processes (``--jobs``: the archive's partitions shared out, records merged
    back into one process's order), against fastavro reading the same files.

    The notes give the CPU time per event (this process, and the workers) and the speed-up over one
    process: unlike the rates, the CPU time hardly moves when other work shares the machine."""
    ours: dict[int, list[float]] = {1: [], jobs: []}
    cpu: dict[int, list[tuple[float, float]]] = {1: [], jobs: []}
    baseline = []
    for run in range(runs):
        for processes in dict.fromkeys((1, jobs)):
            click.echo(f"    replay, {processes} process{'es' if processes > 1 else ''}, run {run + 1} of {runs}",
                       err=True)  # fmt: skip
            started = time.perf_counter()
            read = 0
            for log in logs:
                with log.open("rb") as source:
                    read += sum(1 for _ in fastavro.reader(source))
            baseline.append(read / (time.perf_counter() - started))
            started, own = time.perf_counter(), time.process_time()
            result = replay_packed(logs, policies, _nothing, _nothing, progress=False, jobs=processes)
            ours[processes].append(count / (time.perf_counter() - started))
            cpu[processes].append(((time.process_time() - own) / count, result.worker_cpu / count))
    name = "fastavro reads the same files"

    def note(processes: int) -> str:
        own = statistics.median(c[0] for c in cpu[processes]) * 1e6
        text = (f"--jobs {processes}; " if processes > 1 else "") + f"CPU per event: {own:.1f} µs"
        if processes > 1:
            workers = statistics.median(c[1] for c in cpu[processes]) * 1e6
            speed_up = statistics.median(ours[processes]) / statistics.median(ours[1])
            text += f" here, {workers:.1f} µs in the workers; {speed_up:.2f} × one process"
        return text

    return [
        Row("replay: Avro log to alerts, one process", "events/s", ours[1], name, baseline, "≥ 0.25 × baseline", 0.25,
            note=note(1)),
        Row("replay: Avro log to alerts, every core", "events/s", ours[jobs], name, baseline, "≥ 0.5 × baseline", 0.5,
            note=note(jobs) if jobs > 1 else "one core only: the same as one process"),
    ]  # fmt: skip


def generate_files(folder: Path, students: int, seed: int, policies: PolicyBook) -> dict[str, Any]:
    """A season's four agency files (no connector run): the manifest."""
    policy = policies.get(DEMO_POOL, DEMO_YEAR)
    if policy is None:
        raise click.ClickException(f"the policies have no entry for pool {DEMO_POOL}, year {DEMO_YEAR}")
    config = SeasonConfig(DEMO_POOL, DEMO_YEAR, students, seed, folder, policy, policies)
    return SeasonGenerator(config, SECRET).generate(progress=False)


def csv_rows_per_second(path: Path) -> float:
    """The baseline: Python's csv module reading the file, nothing else."""
    started = time.perf_counter()
    with path.open(encoding="utf-8-sig", newline="") as source:
        rows = sum(1 for _ in csv.reader(source)) - 1
    return rows / (time.perf_counter() - started)


def bench_ingest(path: Path, runs: int, jobs: int) -> list[Row]:
    """``ingest`` of one agency file, every record to its event or dead letter as the canonical JSON
    lines ``ingest --out`` writes (handed to a sink that keeps nothing), in one process and with
    ``jobs`` processes, against the csv module.

    The notes give the CPU time per row as well (this process, and the workers): unlike the rates,
    it hardly moves when other work shares the machine."""
    ours: dict[int, list[float]] = {1: [], jobs: []}
    cpu: dict[int, list[tuple[float, float]]] = {1: [], jobs: []}
    baseline = []
    for run in range(runs):
        for processes in dict.fromkeys((1, jobs)):
            click.echo(f"    ingest, {processes} process{'es' if processes > 1 else ''}, run {run + 1} of {runs}",
                       err=True)  # fmt: skip
            baseline.append(csv_rows_per_second(path))
            started, own, children = time.perf_counter(), time.process_time(), _children_cpu()
            summary = ingest_lines("education", [path], SECRET, lambda _e: None, lambda _d: None, progress=False,
                                   jobs=processes)  # fmt: skip
            ours[processes].append(summary.read / (time.perf_counter() - started))
            cpu[processes].append(
                ((time.process_time() - own) / summary.read, (_children_cpu() - children) / summary.read)
            )
    name = "csv module reads the same file"

    def note(processes: int) -> str:
        own = statistics.median(c[0] for c in cpu[processes]) * 1e6
        workers = statistics.median(c[1] for c in cpu[processes]) * 1e6
        return f"CPU per row: {own:.1f} µs" + (f" here, {workers:.1f} µs in the workers" if processes > 1 else "")

    return [
        Row("ingest: CSV rows to validated events, one process", "rows/s", ours[1], name, baseline,
            "≥ 0.1 × baseline", 0.1, note=note(1)),
        Row(f"ingest: CSV rows to validated events, --jobs {jobs}", "rows/s", ours[jobs], name, baseline,
            "≥ 0.3 × baseline", 0.3, note=note(jobs) if jobs > 1 else "one core only: the same as one process"),
    ]  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (ingest's workers, once it returned)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# --- live: producing the log and following a consumer group ------------------------------------


async def _produce(settings: Settings, topic: str, items: Iterable[LogEvent]) -> dict[int, int]:
    """Write log events to ``topic`` as the funnel and clock would (a tick to every partition);
    messages per partition."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all", linger_ms=20, max_batch_size=1024 * 1024)
    await start_client(producer, settings)
    counts = dict.fromkeys(range(settings.partitions), 0)
    try:
        pending = []
        for event in items:
            if isinstance(event, ClockTick):
                for partition in range(settings.partitions):
                    pending.append(await producer.send(topic, tick_message(event.occurred_at), partition=partition))
            else:
                future = await producer.send(topic, encode_message(event), key=event.person_key.encode())
                pending.append(future)
            if len(pending) >= 5000:
                for done in await asyncio.gather(*pending):
                    counts[done.partition] += 1
                pending = []
        for done in await asyncio.gather(*pending):
            counts[done.partition] += 1
    finally:
        await producer.stop()
    return counts


def produce(settings: Settings, topic: str, items: Iterable[LogEvent]) -> int:
    """Messages written."""
    return sum(asyncio.run(_produce(settings, topic, items)).values())


Commit = tuple[float, int]  # when it was seen (monotonic seconds), messages committed by then


@dataclass
class Rate:
    """Messages/s between two commits, over ``intervals`` commit intervals; ``tail`` when the last
    commit counted is the final one (taken up to a commit interval after the work ended)."""

    per_second: float
    intervals: int
    tail: bool


def steady_rate(commits: Sequence[Commit], total: int) -> Rate | None:
    """The rate from the commits seen while a contender worked through ``total`` messages (None when
    everything was committed at once).

    A commit made while messages were still waiting is a sample of steady work; the final one (the
    count reached ``total``) can come up to a commit interval after the work ended, so it is left
    out when at least three earlier commits give two intervals to measure over."""
    moved = [c for i, c in enumerate(commits) if i == 0 or c[1] > commits[i - 1][1]]
    busy = [c for c in moved if c[1] < total]
    window, tail = (busy, False) if len(busy) >= 3 else (moved, True)
    if len(window) < 2 or window[-1][0] <= window[0][0]:
        return None
    (first_at, first_count), (last_at, last_count) = window[0], window[-1]
    return Rate((last_count - first_count) / (last_at - first_at), len(window) - 1, tail)


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib(processes: Sequence[subprocess.Popen[bytes]]) -> int:
    """The highest peak RSS (the kernel's VmHWM) among running processes."""
    return max((_status_kib(p.pid, "VmHWM") for p in processes), default=0)


def follow(
    settings: Settings,
    topic: str,
    total: int,
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    label: str,
) -> tuple[list[Commit], int]:
    """Poll the group's committed offsets until ``total`` messages are committed: the commits seen
    (each time the count moved) and the peak RSS (KiB) of the processes."""
    group = settings.app_id
    commits: list[Commit] = []
    done: int | None = None  # as first seen; only later moves are commits made while followed
    peak = 0
    deadline = time.monotonic() + timeout
    with click.progressbar(length=total, label=f"    {label}", file=sys.stderr) as bar:
        while done is None or done < total:
            if time.monotonic() > deadline:
                raise click.ClickException(f"{label}: processed {done} of {total} within {timeout:.0f}s")
            if any(p.poll() is not None for p in processes):
                raise click.ClickException(f"{label}: a process ended early (see its log in the work directory)")
            now_done = sum(asyncio.run(committed_offsets(settings, group, topic, range(settings.partitions))).values())
            now = time.monotonic()
            if done is not None and now_done > done:
                commits.append((now, now_done))
            if done is None or now_done > done:
                bar.update(now_done - (done or 0))
                done = now_done
            peak = max(peak, peak_rss_kib(processes))
            if done < total:
                time.sleep(0.05)
    return commits or [(time.monotonic(), done)], peak


async def _group_state(settings: Settings, group: str) -> tuple[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await start_client(admin, settings)
    try:
        described = await admin.describe_consumer_groups([group])
        found = [g for response in described for g in response.groups]
        if not found:
            return "", 0
        # (error_code, group_id, state, protocol_type, protocol, members, ...) in every version
        group = found[0]
        return str(group[2]), len(group[5])
    finally:
        await admin.close()


def wait_for_group(
    settings: Settings, group: str, members: int, processes: Sequence[subprocess.Popen[bytes]], timeout: float = 120
) -> float:
    """Wait until consumer group ``group`` is Stable with ``members`` members (its partitions are
    assigned); the seconds it took. Only for a group new to the broker: the embedded broker keeps a
    stopped member for a while."""
    started = time.monotonic()
    while True:
        state, joined = asyncio.run(_group_state(settings, group))
        if state == "Stable" and joined >= members:
            return time.monotonic() - started
        if any(p.poll() is not None for p in processes):
            raise click.ClickException(f"{group}: a process ended before its group was ready (see its log)")
        if time.monotonic() - started > timeout:
            raise click.ClickException(f"{group}: the consumer group was not ready within {timeout:.0f}s ({state})")
        time.sleep(0.2)


# --- live: contenders ----------------------------------------------------------------------------


def live_settings(broker: str, work: Path, name: str, partitions: int, store: str) -> Settings:
    return Settings(
        policy_file=work / BENCH_POLICY,
        bootstrap_servers=broker,
        topic_prefix=name,
        app_id=name,
        partitions=partitions,
        store=store,
        store_dir=work / name,
        clock="off",
        session_timeout=10.0,
        recovery_consistency_check=False,
        fetch_max_wait_ms=100,
        web_port=free_port(),
    )


def start_contender(kind: str, settings: Settings, work: Path, workers: int) -> list[subprocess.Popen[bytes]]:
    name = settings.app_id
    processes = []
    for number in range(workers):
        store_dir = work / name / str(number)
        store_dir.mkdir(parents=True, exist_ok=True)
        log = work / f"{name}-{number}.log"
        if kind == "enrollbridge":
            worker = settings.model_copy(update={"web_port": free_port(), "store_dir": store_dir})
            processes.append(start_process("worker", worker, log))
            continue
        arguments = [kind, str(settings.bootstrap_servers), Topics(name).events, name, str(settings.partitions),
                     str(store_dir), str(COMMIT_INTERVAL), str(COMMIT_EVERY)]  # fmt: skip
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "enrollbridge.bench.baselines", *arguments],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=Path(__file__).resolve().parents[2],
                )
            )
    return processes


@dataclass
class LiveRun:
    rate: Rate | None
    peak_rss_kib: int
    name: str
    store_dir: Path


def run_contender(
    kind: str,
    broker: str,
    work: Path,
    items: Sequence[LogEvent],
    partitions: int,
    workers: int = 1,
    store: str = "memory",
) -> LiveRun:
    """One contender over its own copy of the unified log: produce it, start the processes, time them."""
    name = f"{kind}{workers}x{time.monotonic_ns() % 10**9}"
    settings = live_settings(broker, work, name, partitions, store)
    asyncio.run(ensure_topics(settings))
    total = produce(settings, Topics(name).events, items)
    processes = start_contender(kind, settings, work, workers)
    try:
        commits, peak = follow(settings, Topics(name).events, total, processes, max(600.0, total / 200), name)
    finally:
        stop_processes(*processes)
    return LiveRun(steady_rate(commits, total), peak, name, work / name)


def live_rows(ours: list[LiveRun], theirs: dict[str, list[LiveRun]], two: list[LiveRun]) -> list[Row]:
    rows = []
    labels = {
        "quix": ("(b) minimal Quix Streams counter", "≥ 1.0 × (b)", 1.0),
        "faust": ("(a) minimal Faust table counter", "— (for reference)", None),
    }
    for kind in ("quix", "faust"):
        if kind in theirs:
            label, target, ratio = labels[kind]
            note, failure = _commit_note([*ours, *theirs[kind]])
            rows.append(Row("live: unified log to alerts, one worker", "events/s", _rates(ours), label,
                            _rates(theirs[kind]), target, ratio, note=note, failure=failure))  # fmt: skip
    if two:
        note, failure = _commit_note([*two, *ours])
        rows.append(Row("scale-out: two worker processes", "events/s", _rates(two), "one worker", _rates(ours),
                        "≥ 1.7 ×", 1.7, note=note, failure=failure))  # fmt: skip
    return rows


def _per_second(rate: Rate | None) -> str:
    return f"{rate.per_second:,.0f}/s" if rate is not None else "a rate too short to measure"


def _rates(runs: list[LiveRun]) -> list[float]:
    return [run.rate.per_second for run in runs if run.rate is not None]


def _commit_note(runs: list[LiveRun]) -> tuple[str, str]:
    """How many commit intervals the rates rest on, or the failure of a run too short (``steady_rate``)."""
    rates = [run.rate for run in runs if run.rate is not None]
    if len(rates) < len(runs):
        return "", "not measured: a run was committed all at once (raise --live-students)"
    fewest = min(rate.intervals for rate in rates)
    note = f"rates over ≥ {fewest} commit interval{'s' if fewest != 1 else ''} (every {COMMIT_INTERVAL:g} s)"
    if any(rate.tail for rate in rates):
        note += "; a run too short to leave out its final commit (raise --live-students)"
    return note, ""


# --- checkpoint sweep over a large RocksDB store ------------------------------------------------


def split_at(items: Sequence[LogEvent], at: int) -> tuple[list[LogEvent], ClockTick, list[LogEvent]]:
    """The log before the tick at ``at``, that tick, and the log after it."""
    for index, item in enumerate(items):
        if isinstance(item, ClockTick) and item.occurred_at == at:
            return list(items[:index]), item, list(items[index + 1 :])
    raise click.ClickException("the live season's log has no tick at the first checkpoint")


def settled_at(policies: PolicyBook, at: int) -> Callable[[bytes], bool]:
    """Whether a stored person state is on a roster and needs no alert at the first checkpoint's tick
    ``at``: the sweep evaluates such a person's rules and writes nothing."""
    tick = make_tick(at)

    def settled(value: bytes) -> bool:
        state = load_state(value)
        if not state.roster_pools():
            return False
        store = MemoryStore()  # its clock not started: every first checkpoint up to ``at`` passes
        store.put("0" * 64, state)
        return not Engine(policies, store).process(tick)

    return settled


@dataclass
class Filled:
    persons: int  # in the store now
    copies: int  # of them, copies
    models: int  # distinct states the copies were made from


def fill_store(store_dir: Path, persons: int, partitions: int, keep: Callable[[bytes], bool]) -> Filled:
    """Copy person states of a stopped worker's RocksDB store under new keys until it holds ``persons``.

    Only states ``keep`` accepts are copied (all of them when it accepts none)."""
    from rocksdict import Options, Rdict, WriteBatch

    from streams.live.partition_store import partition_of

    paths = {int(path.name.rsplit("-", 1)[1].removesuffix(".db")): path for path in store_dir.rglob("persons-*.db")}
    # Opened as Faust's rocksdict driver opens them: raw bytes, no pickling.
    dbs = {partition: Rdict(str(path), Options(raw_mode=True)) for partition, path in paths.items()}
    try:
        states = [value for db in dbs.values() for key, value in db.items() if _is_person_key(key)]
        if not states:
            raise click.ClickException(f"no person states in the RocksDB store under {store_dir}")
        models = [value for value in states if keep(value)] or states
        start = len(states)
        batches = {partition: WriteBatch(raw_mode=True) for partition in dbs}
        with click.progressbar(range(start, persons), label="    filling the RocksDB store", file=sys.stderr) as bar:
            for number in bar:
                key = hashlib.sha256(b"bench-copy-%d" % number).hexdigest().encode()
                batches[partition_of(key, partitions)].put(key, models[number % len(models)])
                if number % 100_000 == 0:
                    for partition, batch in batches.items():
                        dbs[partition].write(batch)
                        batches[partition] = WriteBatch(raw_mode=True)
            for partition, batch in batches.items():
                dbs[partition].write(batch)
        return Filled(max(persons, start), max(0, persons - start), len(models))
    finally:
        for db in dbs.values():
            db.close()


def _is_person_key(key: object) -> bool:
    return isinstance(key, bytes) and len(key) == 64 and not key.startswith(b"~")


def bench_sweep(
    broker: str, work: Path, items: Sequence[LogEvent], sweep_at: int, persons: int, policies: PolicyBook
) -> Row:
    """A worker on a RocksDB store of ``persons`` persons: the first checkpoint's sweep over all of
    them, then the rest of the season (new events for persons in the store).

    Streaming that many persons through a worker would take hours here, so the store is filled as a
    long-running worker's would be, then used by the real worker. A first run processes the live
    season up to the first checkpoint; its person states are copied under new keys into the worker's
    RocksDB partitions (each key into the partition Kafka would give it) until the store holds
    ``persons``. The copies are of roster students who are settled by then, so the sweep evaluates
    every one of them and raises nothing for them (a sweep raising millions of alerts is not what
    this row measures). The worker then starts again on that store: once its group is ready, the
    checkpoint's tick is written and timed until every partition has committed it. Last, the rest of
    the season (every event of it new, for persons in the store) is processed by the worker started
    once more."""
    partitions = 4
    before, tick, after = split_at(items, sweep_at)
    first = run_contender("enrollbridge", broker, work, before, partitions, store="rocksdb")
    filled = fill_store(first.store_dir, persons, partitions, settled_at(policies, sweep_at))
    settings = live_settings(broker, work, first.name, partitions, "rocksdb")
    topic = Topics(first.name).events
    done = sum(asyncio.run(committed_offsets(settings, first.name, topic, range(partitions))).values())
    processes = start_contender("enrollbridge", settings, work, 1)
    try:
        # Ready when it has committed a message written after it started: the last tick again, which
        # changes nothing (time never goes back). The group's state cannot tell: the embedded broker
        # keeps the first run's worker as a member for a while.
        done += produce(settings, topic, [next(item for item in reversed(before) if isinstance(item, ClockTick))])
        follow(settings, topic, done, processes, 600.0, "worker ready")
        written_at = time.monotonic()
        done += produce(settings, topic, [tick])
        commits, sweep_peak = follow(settings, topic, done, processes, 3600.0, "checkpoint sweep")
        sweep_seconds = commits[-1][0] - written_at
    finally:
        stop_processes(*processes)
    # The rest of the season is written before the worker starts again, so its rate is the worker's,
    # not the pace at which the benchmark writes.
    done += produce(settings, topic, after)
    processes = start_contender("enrollbridge", settings, work, 1)
    try:
        commits, peak = follow(settings, topic, done, processes, max(600.0, len(after) / 100), "after the sweep")
        rate = steady_rate(commits, done)
    finally:
        stop_processes(*processes)
    peak = max(peak, sweep_peak)
    store_bytes = sum(p.stat().st_size for p in first.store_dir.rglob("*") if p.is_file())
    live_persons = filled.persons - filled.copies
    return Row(
        f"checkpoint sweep over {filled.persons:,} persons in RocksDB",
        "MiB peak RSS",
        [peak / 1024],
        target="RSS < 1 GiB at 10,000,000 persons; time reported",
        target_max=1024,
        failure="" if filled.persons >= 10_000_000 else f"measured at {filled.persons:,} persons only",
        note=f"sweep {sweep_seconds:,.1f} s (commits every {COMMIT_INTERVAL:g} s); {filled.copies:,} persons are "
        f"copies of {filled.models:,} settled roster students, {live_persons:,} from the live season; then "
        f"{len(after):,} new events at {_per_second(rate)}; store {store_bytes / filled.persons:,.0f} "
        f"bytes/person on disk; RSS with {live_persons:,} persons: {first.peak_rss_kib / 1024:,.0f} MiB",
    )


# --- latency ------------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Every record posted, accounted for: an alert (seconds after its post), rejected by the source
    (by error code), or missing (no alert within the wait)."""

    posted: int = 0
    seconds: list[float] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    wait: float = 0.0
    achieved_rate: float = 0.0


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile; ``inf`` values (records without an alert) sort last."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def latency_row(found: Latencies, rate: int) -> Row:
    unanswered = found.posted - len(found.seconds)
    assert unanswered == found.missing + sum(found.rejected.values()), "a record not accounted for"
    every = [*found.seconds, *[math.inf] * unanswered]
    p50, p99 = percentile(every, 0.5), percentile(every, 0.99)
    shown = [p99 * 1000] if math.isfinite(p99) else []
    failure = ""
    if unanswered:
        parts = [f"{found.missing:,} without an alert within {found.wait:.0f} s"] if found.missing else []
        parts += [f"{count:,} rejected by the source ({code})" for code, count in found.rejected.most_common()]
        failure = f"missed: of {found.posted:,} records, " + ", ".join(parts)
    return Row(
        "latency: HTTP post to alert on topic",
        "ms p99",
        shown,
        target=f"p99 < 1,000 ms at {rate:,} records/s, every record accounted",
        target_max=1000,
        failure=failure,
        note=(f"p50 {p50 * 1000:,.0f} ms" if math.isfinite(p50) else "p50 none")
        + f"; {len(found.seconds):,} of {found.posted:,} records posted at {found.achieved_rate:,.0f}/s gave an alert",
    )


def bench_latency(broker: str, work: Path, rate: int, seconds: int) -> Row:
    """A payment posted to the HTTP source until its alert is on the alerts topic."""
    name = f"latency{time.monotonic_ns() % 10**9}"
    token = "bench-token-" + "x" * 20
    settings = Settings(
        policy_file=work / BENCH_POLICY,
        bootstrap_servers=broker,
        topic_prefix=name,
        app_id=name,
        partitions=4,
        store="memory",
        store_dir=work / name,
        clock="off",
        session_timeout=10.0,
        recovery_consistency_check=False,
        fetch_max_wait_ms=20,
        batch_seconds=0.01,
        web_port=free_port(),
        http_port=free_port(),
        http_tokens=SecretStr(f"tax={token}"),
    )
    asyncio.run(ensure_topics(settings))
    env = {"ENROLLBRIDGE_SECRET": SECRET.value.decode()}
    processes = [
        start_process("worker", settings, work / f"{name}-worker.log", env),
        start_process("http-source", settings, work / f"{name}-http.log", env),
    ]
    try:
        wait_for_http(f"http://127.0.0.1:{settings.http_port}/health", timeout=60)
        wait_for_group(settings, name, 1, processes)
        found = asyncio.run(_post_and_watch(settings, token, rate, seconds))
    finally:
        stop_processes(*processes)
    return latency_row(found, rate)


def _payment(number: str) -> dict[str, Any]:
    """A payment of twice the contribution by a student nobody registered: it raises an alert at once."""
    return {"id_number": number, "coverage_year": 2024, "amount": "760", "region": "450202", "action": "PAID",
            "occurred_at": "2023-10-01 08:00", "payment_ref": f"B{number}"}  # fmt: skip


async def _post_and_watch(settings: Settings, token: str, rate: int, seconds: int, wait: float = 60.0) -> Latencies:
    import aiohttp
    from aiokafka import AIOKafkaConsumer, TopicPartition

    factory = IdentityFactory(["450202"], random.Random(7))
    births = random.Random(11)

    def new_number() -> str:
        return factory.new(date(2015, 1, 1) + births.randrange(3000) * date.resolution)

    found = Latencies(wait=wait)
    sent: dict[str, float] = {}  # person_key: when its post was sent
    seen: dict[str, float] = {}  # person_key: when its first alert was read
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False, fetch_max_wait_ms=10)
    await start_client(consumer, settings)
    # The topic is this run's own: read it from its beginning, so no alert can slip past before the
    # consumer has its partitions (no group, no wait for an assignment).
    alerts = [TopicPartition(Topics(settings.topic_prefix).alerts, p) for p in range(settings.partitions)]
    consumer.assign(alerts)
    await consumer.seek_to_beginning(*alerts)
    posting = True

    async def watch() -> None:
        while posting or not sent.keys() <= seen.keys():
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    alert = decode_message(record.value or b"", ("AlertRecord",))
                    assert isinstance(alert, AlertRecord)
                    seen.setdefault(alert.person_key, time.monotonic())

    url = f"http://127.0.0.1:{settings.http_port}/v1/records/tax"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

        async def post(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with session.post(url, data=orjson.dumps(rows)) as response:
                answer = await response.json(content_type=None)
                if response.status != 200:
                    raise click.ClickException(f"the HTTP source answered {response.status}: {answer}")
                results: list[dict[str, Any]] = answer["results"]
                return results

        # The pipeline is ready when a first record's alert has come through; it is not counted.
        probe = new_number()
        watcher = asyncio.create_task(watch())
        await post([_payment(probe)])
        try:
            await asyncio.wait_for(_until(lambda: _key(probe) in seen), timeout=wait)
        except TimeoutError:
            raise click.ClickException(f"latency: no alert for a first record within {wait:.0f}s") from None

        batch = max(1, rate // 50)  # 50 requests a second
        started = time.monotonic()
        for step in range(seconds * 50):
            rows = [_payment(new_number()) for _ in range(batch)]
            at = time.monotonic()
            results = await post(rows)
            found.posted += len(rows)
            for row, result in zip(rows, results, strict=True):
                if result["status"] == "accepted":
                    sent[_key(str(row["id_number"]))] = at
                else:
                    found.rejected[str(result.get("error_code"))] += 1
            await asyncio.sleep(max(0.0, started + (step + 1) / 50 - time.monotonic()))
        found.achieved_rate = found.posted / (time.monotonic() - started)
        posting = False
    with contextlib.suppress(TimeoutError):  # what has not come by then is counted missing
        await asyncio.wait_for(watcher, timeout=wait)
    await consumer.stop()
    found.seconds = [seen[key] - at for key, at in sent.items() if key in seen]
    found.missing = sum(1 for key in sent if key not in seen)
    return found


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.02)


def _key(number: str) -> str:
    return person_key(number, SECRET)


# --- the command --------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    if os.path.exists("/proc/meminfo"):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {system}"


def render(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| measurement | enrollbridge | baseline | ratio | target | verdict | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = f"{row.baseline_name}: {_spread(row.baseline)}" if row.baseline else "—"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
        ours = f"{_spread(row.ours)} {row.unit}" if row.ours else "—"
        cells = [row.measurement, ours, baseline, ratio, row.target or "—", row.verdict() or "—", row.note or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_bench(
    students: int,
    runs: int,
    live_students: int,
    memory_persons: int,
    quix: bool,
    out: Path,
    work: Path | None,
    only: Sequence[str] = (),
    jobs: int | None = None,
) -> str:
    """Run the rows named in ``only`` (every row when empty); the table, also written to ``out``
    when every row ran."""
    wanted = set(only) or set(ROWS)
    jobs = jobs or os.cpu_count() or 1
    work = work or Path(tempfile.mkdtemp(prefix="enrollbridge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # The season's own year only: the shipped file also holds later years, whose coverage work the
    # 2024 season does not need and the baselines do not do.
    shipped = [policy for policy in load_policies() if policy.coverage_year == DEMO_YEAR]
    (work / BENCH_POLICY).write_text("\n".join(policy.to_toml() for policy in shipped), encoding="utf-8")
    policies = load_policies(work / BENCH_POLICY)
    click.echo(f"work directory {work}", err=True)
    rows: list[Row] = []

    if "replay" in wanted:
        click.echo(f"== replay: a season of {students:,} students", err=True)
        manifest, event_files = prepare_season(work / "season", students, 1, SECRET, policies)
        until = parse_instant(manifest["until"])
        merged = MergedLog(event_files)
        logs, count = log_archive(work / "log", merged, merged.tick_times(policies, until), until, LOG_PARTITIONS)
        rows.extend(bench_replay(logs, count, policies, runs, jobs))
    if "ingest" in wanted:
        click.echo(f"== ingest: the education file of a season of {students:,} students", err=True)
        if not (work / "season" / "education.csv").exists():
            generate_files(work / "season", students, 1, policies)
        rows.extend(bench_ingest(work / "season" / "education.csv", runs, jobs))

    if wanted & {"live", "scale-out", "sweep", "latency"}:
        policy = policies.get(DEMO_POOL, DEMO_YEAR)
        assert policy is not None
        ticks: list[int] = []
        items: list[LogEvent] = []
        if wanted & {"live", "scale-out", "sweep"}:
            click.echo(f"== live: a season of {live_students:,} students on the embedded broker", err=True)
            manifest, live_files = prepare_season(work / "live-season", live_students, 2, SECRET, policies)
            live_until = parse_instant(manifest["until"])
            live = MergedLog(live_files)
            ticks = live.tick_times(
                policies, live_until, every=MS_PER_DAY, since=start_of_local_day(policy.collection_start - 7)
            )
            items = list(live.stream(ticks, live_until))
        with EmbeddedBroker(log_file=work / "broker.log") as broker:
            servers = broker.bootstrap_servers
            ours: list[LiveRun] = []
            theirs: dict[str, list[LiveRun]] = {}
            two: list[LiveRun] = []
            if wanted & {"live", "scale-out"}:
                ours = [run_contender("enrollbridge", servers, work, items, 4) for _ in range(runs)]
            if "live" in wanted:
                for kind in ("quix", "faust") if quix else ("faust",):
                    theirs[kind] = [run_contender(kind, servers, work, items, 4) for _ in range(runs)]
            if "scale-out" in wanted:
                two = [run_contender("enrollbridge", servers, work, items, 4, workers=2) for _ in range(runs)]
            rows.extend(live_rows(ours, theirs, two))
            if "sweep" in wanted:
                sweep_at = min(t for t in ticks if t >= policy.first_checkpoint_passes_at)
                rows.append(bench_sweep(servers, work, items, sweep_at, memory_persons, policies))
            if "latency" in wanted:
                rows.append(bench_latency(servers, work, rate=1000, seconds=10))
    header = f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}; runs per figure: {runs}."
    table = render(rows, header)
    if wanted == set(ROWS):
        write_table(out, table)
    else:
        click.echo(f"(--only: {out} left as it is; its table is one whole run)", err=True)
    shutil.rmtree(work / "season", ignore_errors=True)
    return table


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def write_table(out: Path, table: str) -> None:
    """Replace the measured table in ``out`` (between the markers), keeping the notes around it."""
    block = f"{START}\n{table}\n{END}"
    text = out.read_text(encoding="utf-8") if out.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    out.write_text(text, encoding="utf-8")
