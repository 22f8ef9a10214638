"""``enrollbridge bench``: every measurement of the performance issue, side by side with its baseline
in the same run on the same machine, printed as a table and written to BENCHMARKS.md.

Figures are medians of ``--runs`` runs with the min-max shown. Nothing here asserts a time: the
numbers are for people to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import click
import fastavro
import orjson
from pydantic import SecretStr

from connectors.identity import Secret, person_key
from connectors.ingest import ingest_files
from enrollbridge.demo import prepare_season
from enrollbridge.live_demo import start_process, stop_processes
from enrollbridge.synth.people import IdentityFactory
from infra.admin import ensure_topics
from infra.broker import EmbeddedBroker, free_port, wait_for_http
from infra.kafka import aiokafka_options, start_client
from infra.readback import committed_offsets
from infra.settings import Settings
from infra.topics import Topics
from schemas.codec import decode_message, encode_message, write_event_container
from schemas.models import AlertRecord, ClockTick
from schemas.times import MS_PER_DAY, parse_instant, start_of_local_day
from streams.core.clock import tick_message
from streams.core.policy import PolicyBook, load_policies
from streams.replay import MergedLog, replay

SECRET = Secret(b"benchmark-only-secret")


@dataclass
class Row:
    measurement: str
    unit: str
    ours: list[float]
    baseline_name: str = ""
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    target_ratio: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.ours:
            return None
        return statistics.median(self.ours) / statistics.median(self.baseline)

    def verdict(self) -> str:
        if self.target_ratio is None or self.ratio is None:
            return ""
        return "met" if self.ratio >= self.target_ratio else f"missed by {self.target_ratio / self.ratio:.1f}x"


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


def log_container(folder: Path, merged: MergedLog, ticks: list[int], until: int) -> tuple[Path, int]:
    """The season's unified log as one Avro container (what an archive holds); its event count."""
    path = folder / "log.avro"
    with path.open("wb") as out:
        count = write_event_container(out, merged.stream(ticks, until))
    return path, count


def bench_replay(log: Path, count: int, policies: PolicyBook, runs: int) -> Row:
    ours, baseline = [], []
    for run in range(runs):
        click.echo(f"    replay, run {run + 1} of {runs}", err=True)
        started = time.perf_counter()
        with log.open("rb") as source:
            read = sum(1 for _ in fastavro.reader(source))
        baseline.append(read / (time.perf_counter() - started))
        started = time.perf_counter()
        replay([log], policies, lambda _alert: None, progress=False)
        ours.append(count / (time.perf_counter() - started))
    return Row(
        "replay: Avro log to alerts",
        "events/s",
        ours,
        "fastavro reads the same file",
        baseline,
        "≥ 0.5 × baseline",
        0.5,
    )


def bench_ingest(path: Path, runs: int) -> Row:
    ours, baseline = [], []
    for run in range(runs):
        click.echo(f"    ingest, run {run + 1} of {runs}", err=True)
        started = time.perf_counter()
        with path.open(encoding="utf-8-sig", newline="") as source:
            rows = sum(1 for _ in csv.reader(source)) - 1
        baseline.append(rows / (time.perf_counter() - started))
        started = time.perf_counter()
        summary = ingest_files("education", [path], SECRET, lambda _e: None, lambda _d: None, progress=False)
        ours.append(summary.read / (time.perf_counter() - started))
    return Row(
        "ingest: CSV rows to validated events",
        "rows/s",
        ours,
        "csv module reads the same file",
        baseline,
        "≥ 0.3 × baseline",
        0.3,
    )


# --- live ---------------------------------------------------------------------------------------


async def _produce_log(
    settings: Settings, topic: str, merged: MergedLog, ticks: list[int], until: int
) -> dict[int, int]:
    """Write the season's unified log to ``topic`` as the funnel and clock would; messages per partition."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all", linger_ms=20, max_batch_size=1024 * 1024)
    await start_client(producer, settings)
    counts = dict.fromkeys(range(settings.partitions), 0)
    try:
        pending = []
        for event in merged.stream(ticks, until):
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


def _throughput(
    settings: Settings, group: str, topic: str, total: int, processes: list[subprocess.Popen[bytes]], timeout: float
) -> tuple[float, int]:
    """Events/s between the first and the last commit that moved (startup excluded), and peak RSS (KiB)."""
    first: tuple[float, int] | None = None
    last: tuple[float, int] = (0.0, 0)
    peak = 0
    deadline = time.monotonic() + timeout
    with click.progressbar(length=total, label=f"    {group}", file=sys.stderr) as bar:
        while last[1] < total and time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                raise click.ClickException(f"{group}: a process ended early (see its log)")
            done = sum(asyncio.run(committed_offsets(settings, group, topic, range(settings.partitions))).values())
            now = time.monotonic()
            if done > last[1]:
                bar.update(done - last[1])
                if first is None:
                    first = (now, done)
                last = (now, done)
            peak = max(peak, *(_rss_kib(p.pid) for p in processes))
            time.sleep(0.05)
    if first is None or last[1] < total:
        raise click.ClickException(f"{group}: processed {last[1]} of {total} within {timeout:.0f}s")
    if last[0] <= first[0]:
        raise click.ClickException(f"{group}: everything was committed at once; no rate between two commits")
    return (last[1] - first[1]) / (last[0] - first[0]), peak


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class LiveRun:
    rate: float
    peak_rss_kib: int
    store_bytes: int
    name: str
    store_dir: Path


def run_contender(
    kind: str,
    broker: str,
    work: Path,
    merged: MergedLog,
    ticks: list[int],
    until: int,
    partitions: int,
    workers: int = 1,
    store: str = "memory",
    again: str | None = None,
) -> LiveRun:
    """One contender over a fresh copy of the unified log: produce it, start the processes, time them.

    With ``again`` (an earlier run's name), the same topics, consumer group and store are used once
    more: the log is appended a second time and the run lasts until that copy is processed too."""
    name = again or f"{kind}{workers}x{time.monotonic_ns() % 10**9}"
    settings = Settings(
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
    topic = Topics(name).events
    asyncio.run(ensure_topics(settings))
    done_before = sum(asyncio.run(committed_offsets(settings, name, topic, range(partitions))).values())
    counts = asyncio.run(_produce_log(settings, topic, merged, ticks, until))
    total = done_before + sum(counts.values())
    processes = []
    for number in range(workers):
        (work / name / str(number)).mkdir(parents=True, exist_ok=True)
        log = work / f"{name}-{number}.log"
        if kind == "enrollbridge":
            processes.append(
                start_process(
                    "worker",
                    settings.model_copy(update={"web_port": free_port(), "store_dir": work / name / str(number)}),
                    log,
                )
            )
        else:
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "enrollbridge.bench.baselines",
                            kind,
                            broker,
                            topic,
                            name,
                            str(partitions),
                            str(work / name / str(number)),
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=Path(__file__).resolve().parents[2],
                    )
                )
    try:
        rate, peak = _throughput(settings, name, topic, total, processes, timeout=max(600.0, total / 200))
    finally:
        stop_processes(*processes)
    store_bytes = sum(p.stat().st_size for p in (work / name).rglob("*") if p.is_file()) if store == "rocksdb" else 0
    return LiveRun(rate, peak, store_bytes, name, work / name)


# --- memory -------------------------------------------------------------------------------------


def bench_memory(contender: Callable[..., LiveRun], live: MergedLog, persons: int) -> Row:
    """A worker with the RocksDB store holding ``persons`` persons, processing the live season.

    Streaming that many persons through a worker would take hours here, so the store is filled the
    way a long-running worker's would be, then used by the real worker: a first run processes the
    season; its person states are copied under new keys into the worker's RocksDB partitions (each key
    into the partition Kafka would give it) until the store holds ``persons``; the worker then starts
    again on that store and processes the season's log a second time. Peak RSS is of that second run.
    """
    first = contender("enrollbridge", store="rocksdb")
    held = fill_store(first.store_dir, persons, partitions=4)
    second = contender("enrollbridge", store="rocksdb", again=first.name)
    seen = len({e.person_key for e in live.stream([], None) if not isinstance(e, ClockTick)})
    return Row(
        "memory: worker with RocksDB store",
        "MiB RSS",
        [second.peak_rss_kib / 1024],
        note=f"{held:,} persons in the store ({seen:,} from the live season, the rest copies of their states); "
        f"state on disk {second.store_bytes / held:,.0f} bytes/person; worker RSS with {seen:,} persons: "
        f"{first.peak_rss_kib / 1024:,.0f} MiB; target RSS < 1 GiB at 10,000,000 persons: "
        + ("met" if second.peak_rss_kib < 1024 * 1024 else "missed")
        + ("" if held >= 10_000_000 else f" (measured at {held:,} only)"),
    )


def fill_store(store_dir: Path, persons: int, partitions: int) -> int:
    """Copy the person states of a stopped worker's RocksDB store under new keys until it holds ``persons``."""
    from rocksdict import Options, Rdict, WriteBatch

    from streams.live.partition_store import partition_of

    paths = {int(path.name.rsplit("-", 1)[1].removesuffix(".db")): path for path in store_dir.rglob("persons-*.db")}
    # Opened as Faust's rocksdict driver opens them: raw bytes, no pickling.
    dbs = {partition: Rdict(str(path), Options(raw_mode=True)) for partition, path in paths.items()}
    try:
        states = [value for db in dbs.values() for key, value in db.items() if _is_person_key(key)]
        if not states:
            raise click.ClickException(f"no person states in the RocksDB store under {store_dir}")
        start = len(states)
        batches = {partition: WriteBatch(raw_mode=True) for partition in dbs}
        with click.progressbar(range(start, persons), label="    filling the RocksDB store", file=sys.stderr) as bar:
            for number in bar:
                key = hashlib.sha256(b"bench-copy-%d" % number).hexdigest().encode()
                batches[partition_of(key, partitions)].put(key, states[number % start])
                if number % 100_000 == 0:
                    for partition, batch in batches.items():
                        dbs[partition].write(batch)
                        batches[partition] = WriteBatch(raw_mode=True)
            for partition, batch in batches.items():
                dbs[partition].write(batch)
        return max(persons, start)
    finally:
        for db in dbs.values():
            db.close()


def _is_person_key(key: object) -> bool:
    return isinstance(key, bytes) and len(key) == 64 and not key.startswith(b"~")


# --- latency ------------------------------------------------------------------------------------


def bench_latency(broker: str, work: Path, rate: int, seconds: int) -> Row:
    """A payment posted to the HTTP source until its OVERPAID alert is on the alerts topic."""
    name = f"latency{time.monotonic_ns() % 10**9}"
    token = "bench-token-" + "x" * 20
    settings = Settings(
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
    env = {"ENROLLBRIDGE_SECRET": "benchmark-only-secret"}
    processes = [
        start_process("worker", settings, work / f"{name}-worker.log", env),
        start_process("http-source", settings, work / f"{name}-http.log", env),
    ]
    try:
        wait_for_http(f"http://127.0.0.1:{settings.http_port}/health", timeout=60)
        time.sleep(8)  # let the worker join its group
        latencies = asyncio.run(_post_and_watch(settings, token, rate, seconds))
    finally:
        stop_processes(*processes)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return Row(
        "latency: HTTP post to alert on topic",
        "ms p50",
        [p50],
        note=f"p99 {p99:,.0f} ms at {rate}/s, "
        f"{len(latencies)} records; target p99 < 1000 ms: {'met' if p99 < 1000 else 'missed'}",
    )


async def _post_and_watch(settings: Settings, token: str, rate: int, seconds: int) -> list[float]:
    import aiohttp
    from aiokafka import AIOKafkaConsumer

    factory = IdentityFactory(["450202"], random.Random(7))
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        Topics(settings.topic_prefix).alerts,
        **aiokafka_options(settings),
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await start_client(consumer, settings)
    await asyncio.sleep(1)

    async def watch() -> None:
        while len(seen) < len(sent) or not sent:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    alert = decode_message(record.value, ("AlertRecord",))
                    assert isinstance(alert, AlertRecord)
                    seen.setdefault(alert.person_key, time.monotonic())

    watcher = asyncio.create_task(watch())
    url = f"http://127.0.0.1:{settings.http_port}/v1/records/tax"
    keys: dict[str, str] = {}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        batch = max(1, rate // 50)  # 50 requests a second
        started = time.monotonic()
        for step in range(seconds * 50):
            rows: list[dict[str, Any]] = []
            for _ in range(batch):
                number = factory.new(date(2015, 1, 1) + (random.Random(step).randrange(3000) * date.resolution))
                rows.append(
                    {
                        "id_number": number,
                        "coverage_year": 2024,
                        "amount": "760",
                        "region": "450202",
                        "action": "PAID",
                        "occurred_at": "2023-10-01 08:00",
                        "payment_ref": f"B{number}",
                    }
                )
                keys[_key(number)] = number
            at = time.monotonic()
            async with session.post(url, data=orjson.dumps(rows)) as response:
                answer = await response.json()
            for row, result in zip(rows, answer["results"], strict=True):
                if result["status"] == "accepted":
                    sent[_key(str(row["id_number"]))] = at
            await asyncio.sleep(max(0.0, started + (step + 1) / 50 - time.monotonic()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, timeout=60)
    await consumer.stop()
    return [seen[key] - sent[key] for key in sent if key in seen]


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
        "| measurement | enrollbridge | baseline | ratio | target | verdict / note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = f"{row.baseline_name}: {_spread(row.baseline)}" if row.baseline else "—"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
        verdict = "; ".join(x for x in (row.verdict(), row.note) if x)
        cells = [row.measurement, f"{_spread(row.ours)} {row.unit}", baseline, ratio, row.target or "—", verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_bench(
    students: int, runs: int, live_students: int, memory_persons: int, quix: bool, out: Path, work: Path | None
) -> str:
    work = work or Path(tempfile.mkdtemp(prefix="enrollbridge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    policies = load_policies()
    click.echo(f"work directory {work}", err=True)
    rows: list[Row] = []

    click.echo(f"== offline: a season of {students} students", err=True)
    manifest, event_files = prepare_season(work / "season", students, 1, SECRET, policies)
    until = parse_instant(manifest["until"])
    merged = MergedLog(event_files)
    log, count = log_container(work, merged, merged.tick_times(policies, until), until)
    rows.append(bench_replay(log, count, policies, runs))
    rows.append(bench_ingest(work / "season" / "education.csv", runs))

    click.echo(f"== live: a season of {live_students} students on the embedded broker", err=True)
    _, live_files = prepare_season(work / "live-season", live_students, 2, SECRET, policies)
    live_until = parse_instant(orjson.loads((work / "live-season" / "manifest.json").read_bytes())["until"])
    live = MergedLog(live_files)
    policy = policies.get("450200", 2024)
    assert policy is not None
    ticks = live.tick_times(
        policies, live_until, every=MS_PER_DAY, since=start_of_local_day(policy.collection_start - 7)
    )
    with EmbeddedBroker(log_file=work / "broker.log") as broker:
        contender: Callable[..., LiveRun] = lambda kind, **kw: run_contender(  # noqa: E731
            kind, broker.bootstrap_servers, work, live, ticks, live_until, 4, **kw
        )
        ours = [contender("enrollbridge") for _ in range(runs)]
        baselines = [("faust", "(a) minimal Faust table counter", "≥ 10 × (a)", 10.0)]
        if quix:
            baselines.append(("quix", "(b) minimal Quix Streams counter", "≥ 1.0 × (b)", 1.0))
        for kind, label, target, ratio in baselines:
            theirs = [contender(kind).rate for _ in range(runs)]
            rows.append(Row("live: unified log to alerts, one worker", "events/s", [r.rate for r in ours], label,
                            theirs, target, ratio))  # fmt: skip
        two = [contender("enrollbridge", workers=2) for _ in range(runs)]
        rows.append(
            Row(
                "scale-out: two worker processes",
                "events/s",
                [r.rate for r in two],
                "one worker",
                [r.rate for r in ours],
                "≥ 1.7 ×",
                1.7,
            )
        )
        rows.append(bench_memory(contender, live, memory_persons))
        rows.append(bench_latency(broker.bootstrap_servers, work, rate=1000, seconds=10))
    header = f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}; runs per figure: {runs}."
    table = render(rows, header)
    write_table(out, table)
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
