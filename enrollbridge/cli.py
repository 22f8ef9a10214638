"""The ``enrollbridge`` command (SPEC section 7)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from enrollbridge.bench import ROWS as BENCH_ROWS
from infra.errors import InputError, first_problem

if TYPE_CHECKING:
    from schemas.models import AlertRecord, CoverageRecord

SOURCES = ("education", "insurance", "tax", "hardship")


class _Commands(click.Group):
    """Shows an ``InputError`` as one line and exits with 2, never with a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as error:
            click.echo(f"enrollbridge: error: {error}", err=True)
            ctx.exit(2)


@click.group(cls=_Commands)
@click.version_option(package_name="enrollbridge")
def cli() -> None:
    """Join education, medical insurance and tax records; alert on students not (or wrongly) enrolled."""


def _kafka_options(function: Any) -> Any:
    """Flags shared by every command that talks to Kafka; each overrides its ENROLLBRIDGE_* variable."""
    options = [
        click.option("--bootstrap-servers", help="host:port[,host:port]; unset = the embedded broker where allowed."),
        click.option("--security-protocol", type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])),
        click.option("--sasl-mechanism", type=click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])),
        click.option("--sasl-username"),
        click.option("--ssl-cafile", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--ssl-certfile", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--ssl-keyfile", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--topic-prefix"),
        click.option("--partitions", type=click.IntRange(1, 1024)),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings(**flags: Any) -> Any:
    """Settings from the environment, with the flags that were given on top. The SASL password only
    comes from ENROLLBRIDGE_SASL_PASSWORD, never from a flag (flags show in process lists)."""
    from pydantic import ValidationError

    from infra.settings import Settings

    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        detail = error.errors(include_url=False, include_input=False)[0]
        raise InputError(f"setting {'.'.join(map(str, detail['loc']))}: {detail['msg']}") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _distinct_outputs(inputs: tuple[Path, ...], outputs: dict[str, Path | None]) -> None:
    """Refuses an output that is one of the inputs or another output: writing it would destroy an
    agency's file (or one output would overwrite the other) before a record is read."""
    given = [(option, path) for option, path in outputs.items() if path is not None]
    for number, (option, path) in enumerate(given):
        for source in inputs:
            if _same_file(path, source):
                raise InputError(f"{option} {path} is also an input: it would be overwritten; write elsewhere")
        for other, earlier in given[:number]:
            if _same_file(path, earlier):
                raise InputError(f"{option} {path} is also {other}: give each output its own file")


@contextlib.contextmanager
def _writing_to(out: Path) -> Iterator[None]:
    """Writing into ``out``: an output folder or file that cannot be made (a read-only folder, a path
    through a file, a full disk) is one line naming the path that failed, else the folder asked for."""
    try:
        yield
    except OSError as error:
        raise InputError(f"cannot write {error.filename or out}: {error.strerror or error}") from None


def _encoding_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    import codecs

    if value is None:
        return None
    try:
        return codecs.lookup(value).name
    except LookupError:
        raise click.BadParameter(f"unknown text encoding {value!r} (e.g. utf-8, gb18030)") from None


@cli.command()
@click.argument("source", type=click.Choice(SOURCES))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write events as JSON Lines here instead of publishing to Kafka.",
)
@click.option(
    "--dlq",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write dead letters here (default: beside --out, *.dlq.jsonl).",
)
@click.option(
    "--encoding",
    callback=_encoding_option,
    help="Text encoding of CSV/JSON Lines files (default: UTF-8, or GB18030 when the file is not UTF-8).",
)
@click.option(
    "--complete-through",
    "complete_through",
    callback=lambda _ctx, _param, value: _instant_option(_ctx, _param, value),
    help="Declare the source complete up to this time after publishing (default: the latest version time read).",
)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes converting records (e.g. the number of cores); the output is the same, in the same order.",
)
@_kafka_options
def ingest(
    source: str,
    files: tuple[Path, ...],
    out: Path | None,
    dlq: Path | None,
    encoding: str | None,
    complete_through: int | None,
    jobs: int,
    **flags: Any,
) -> None:
    """Validate, pseudonymise and write (or publish) the records of one agency SOURCE.

    Published to Kafka, the records are followed by the source's watermark: a declaration that the
    source is complete up to --complete-through, which lets the live clock move on."""
    import asyncio
    import contextlib
    import time

    from connectors.identity import Secret
    from connectors.ingest import DeadLetterSink, EventSink, LineSink, VersionTimes, ingest_files, ingest_lines
    from infra.output import OutputFiles
    from schemas.models import SourceWatermark
    from schemas.times import format_instant

    secret = Secret.from_environment()
    on_event: EventSink
    on_dead_letter: DeadLetterSink
    with contextlib.ExitStack() as stack:
        sink = None
        lines: tuple[LineSink, LineSink] | None = None
        if out is not None:
            dlq = dlq or out.with_name(out.name.removesuffix(".jsonl") + ".dlq.jsonl")
            _distinct_outputs(files, {"--out": out, "--dlq": dlq})
            events, dead_letters = stack.enter_context(OutputFiles(out, dlq))
            on_event, on_dead_letter = events.write, dead_letters.write
            lines = events.write_lines, dead_letters.write_lines
            where = f"events: {out}  dead letters: {dlq}"
        else:
            from connectors.kafka_sink import KafkaSink
            from infra.admin import ensure_topics

            settings = _settings(**flags)
            if not settings.bootstrap_servers:
                raise InputError(
                    "no Kafka configured: pass --out EVENTS.jsonl, "
                    "or --bootstrap-servers / ENROLLBRIDGE_BOOTSTRAP_SERVERS"
                )
            asyncio.run(ensure_topics(settings))
            sink = KafkaSink(settings, source)
            stack.callback(sink.close)
            on_event, on_dead_letter = sink.event, sink.dead_letter
            where = f"events: {sink.topic}  dead letters: {sink.topics.dead_letters} on {settings.bootstrap_servers}"
        latest = VersionTimes(on_event)
        try:
            if lines is not None:  # files: the records as their lines, made where they are converted
                summary = ingest_lines(source, files, secret, *lines, encoding=encoding, jobs=jobs)
            else:
                summary = ingest_files(
                    source, files, secret, latest.event, on_dead_letter, encoding=encoding, jobs=jobs
                )
        except InputError as error:  # outputs are written aside and published only at the end
            raise InputError(f"{error}; nothing was written") from None
        if sink is not None:
            sink.publish()
            declared = complete_through if complete_through is not None else latest.latest
            if declared is not None:
                sink.watermark(
                    SourceWatermark(source=source, complete_through=declared, declared_at=int(time.time() * 1000),
                                    origin="ingest " + " ".join(path.name for path in files)[:200])
                )  # fmt: skip
                where += f"  {source} complete through {format_instant(declared)}"
    for counts in summary.files:
        notes = []
        if counts.blank_lines:
            notes.append(f"{counts.blank_lines} blank lines skipped")
        if counts.ignored_columns:
            more = " and more" if counts.more_ignored else ""
            notes.append(f"ignored columns: {', '.join(counts.ignored_columns)}{more}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        click.echo(
            f"  {counts.path}: read {counts.read}, accepted {counts.accepted}, rejected {counts.rejected}{extra}"
        )
    click.echo(f"{source}: read {summary.read}, accepted {summary.accepted}, rejected {summary.rejected}")
    click.echo(where)


def _rates_option(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    from enrollbridge.synth.season import DEFAULT_RATES

    rates: dict[str, float] = {}
    for value in values:
        name, _, number = value.partition("=")
        if name not in DEFAULT_RATES:
            raise click.BadParameter(f"unknown rate {name!r}; known: {', '.join(DEFAULT_RATES)}")
        try:
            rates[name] = float(number)
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected NAME=NUMBER") from None
        if not 0.0 <= rates[name] <= 1.0:
            raise click.BadParameter(f"{value!r}: a rate is between 0 and 1")
    return rates


def _years_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    first, dots, last = value.partition("..")
    try:
        years = (int(first), int(last) if dots else int(first))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected FIRST..LAST, e.g. 2025..2027") from None
    if not 1990 <= years[0] <= years[1] <= 2100 or years[1] - years[0] > 20:
        raise click.BadParameter(f"{value!r}: expected FIRST..LAST within 1990..2100, at most 21 years")
    return years


@cli.command()
@click.option("--pool", required=True, help="City-level pool code, e.g. 450200 (Liuzhou).")
@click.option("--year", "coverage_year", type=int, help="Coverage year, e.g. 2024 (one season).")
@click.option(
    "--years",
    callback=_years_option,
    metavar="FIRST..LAST",
    help="Seasons in a row, e.g. 2025..2027: the last is the current one, the earlier ones its history.",
)
@click.option("--students", required=True, type=click.IntRange(min=1), help="Number of students on the rosters.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed: the same seed gives the same files.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write into.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy TOML (default: the shipped policies).",
)
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl", "xlsx"]), default="csv", show_default=True)
@click.option("--headers", type=click.Choice(["chinese", "canonical"]), default="chinese", show_default=True)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    callback=_rates_option,
    metavar="NAME=SHARE",
    help="Override an anomaly rate, e.g. --rate unenrolled=0.05 (repeatable).",
)
def synth(
    pool: str, coverage_year: int | None, years: tuple[int, int] | None, students: int, seed: int, out: Path,
    policy_file: Path | None, file_format: str, headers: str, rates: dict[str, float],
) -> None:  # fmt: skip
    """Generate a realistic season for one city (or several in a row): four agency files, ground truth
    and a manifest."""
    from connectors.identity import Secret
    from enrollbridge.synth.season import SeasonGenerator, season_config
    from streams.core.policy import load_policies

    if years is None:
        if coverage_year is None:
            raise click.UsageError("give --year YEAR or --years FIRST..LAST")
        years = (coverage_year, coverage_year)
    elif coverage_year is not None:
        raise click.UsageError("give --year YEAR or --years FIRST..LAST, not both")
    first, last = years
    secret = Secret.from_environment()
    config = season_config(load_policies(policy_file), pool, first, last, students, seed, out)
    config = replace(config, rates=rates, file_format=file_format, headers=headers)
    with _writing_to(out):
        manifest = SeasonGenerator(config, secret).generate()
    for counts in manifest["files"].values():
        bad, again = counts["rejected"], counts["redelivered"]
        click.echo(f"  {out / counts['path']}: {counts['rows']} rows ({bad} bad, {again} re-delivered)")
    alerts = sum(n for statuses in manifest["alerts"].values() for n in statuses.values())
    truth = out / "expected_alerts.jsonl"
    seasons = f"{first}..{last}" if first != last else str(last)
    click.echo(f"season {pool} {seasons}: {students} students, {alerts} expected alerts in {truth}")
    click.echo(f"replay with: --policy {out / 'policy.toml'} --until {manifest['until']}")


def _instant_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from schemas.times import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None


# What a replay worker hands back per record (``replay --jobs``): the line to write, and what the
# alert tally keeps (alert_id, kind, status, pool, county).
_AlertRow = tuple[bytes, str, str, str, str, str]


def _alert_row(alert: AlertRecord) -> _AlertRow:
    from schemas.codec import to_json_line

    return to_json_line(alert) + b"\n", alert.alert_id, alert.kind, alert.status, alert.pool, alert.details.county


def _coverage_line(record: CoverageRecord) -> bytes:
    from schemas.codec import to_json_line

    return to_json_line(record) + b"\n"


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy TOML (default: the shipped policies).",
)
@click.option(
    "--until",
    callback=_instant_option,
    help="Replay up to this ISO time (no offset = China Standard Time) and tick there.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write alert records here, one JSON line each.",
)
@click.option(
    "--coverage-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the roster students' coverage status changes here (the figures' source).",
)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes running the rules, each over a share of the persons, or of an archive's partitions "
    "(e.g. the number of cores); "
    "the outputs are byte for byte those of one process.",
)
def replay(
    files: tuple[Path, ...],
    policy_file: Path | None,
    until: int | None,
    out: Path,
    coverage_out: Path | None,
    jobs: int,
) -> None:
    """Run the rules offline over connector outputs or an archived log (JSON Lines or Avro)."""
    from infra.output import OutputFiles
    from streams.core.policy import load_policies
    from streams.core.summary import AlertTally, _Last
    from streams.replay import replay_packed

    _distinct_outputs((*files, policy_file) if policy_file else files, {"--out": out, "--coverage-out": coverage_out})
    policies = load_policies(policy_file)
    tally = AlertTally()
    # Written aside: a replay stopped by a bad record leaves no half of an alert file behind.
    with OutputFiles(out, *([coverage_out] if coverage_out else [])) as (alerts, *coverage):

        def emit(row: _AlertRow) -> None:
            alerts.write_lines(row[0])
            tally.records += 1
            tally.latest[row[1]] = _Last(*row[2:])

        result = replay_packed(
            files, policies, _alert_row, emit, until, None, _coverage_line if coverage else None,
            coverage[0].write_lines if coverage else None, jobs,
        )  # fmt: skip
    mode = "archived log, order kept" if result.mode == "log" else "connector outputs, merged by version time"
    click.echo(f"replayed {result.events} events and {result.ticks} ticks ({mode}) for {result.persons} persons")
    if result.skipped_after_until:
        click.echo(f"{result.skipped_after_until} events after --until were not replayed")
    if result.overflow:
        click.echo(
            f"{result.overflow} events did not fit their person's state (too many records or versions for one "
            "person, or an over-long field): those persons' alerts may be incomplete"
        )
    if result.forgotten:
        click.echo(
            f"{result.forgotten} events were for coverage years older than the policy file's history_years keeps "
            "when they arrived: left out"
        )
    click.echo(f"alerts: {out}")
    click.echo(tally.render())


@cli.command()
@click.option("--students", default=5_000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--out", default=Path("season"), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--offline", is_flag=True, help="No Kafka: generate, ingest and replay from files.")
@click.option(
    "--year",
    "coverage_year",
    default=2024,
    show_default=True,
    type=int,
    help="The season to run; from 2025 on with the two seasons before it as its history (e.g. 2027).",
)
@click.option("--web-port", type=click.IntRange(1, 65535), help="Port of the dashboard (default: a free one).")
@click.option(
    "--exit",
    "leave",
    is_flag=True,
    help="Stop when the season is done. Without it the page stays up until Ctrl-C, if run from a terminal.",
)
def demo(
    students: int, seed: int, out: Path, offline: bool, coverage_year: int, web_port: int | None, leave: bool
) -> None:
    """A whole Liuzhou season (2024 by default), live on the embedded broker (or --offline), with the
    alert summary."""
    import os

    from connectors.identity import SECRET_VARIABLE, Secret

    if not os.environ.get(SECRET_VARIABLE):
        click.echo(f"{SECRET_VARIABLE} is not set: using a throw-away demo secret")
        os.environ[SECRET_VARIABLE] = "enrollbridge-demo-only"
    if offline:
        from enrollbridge.demo import offline_season
        from streams.core.policy import load_policies

        secret = Secret.from_environment()
        policies = load_policies()
        with _writing_to(out):
            summary = offline_season(out, students, seed, secret, policies, coverage_year)
        click.echo(summary.render())
        return
    from enrollbridge.live_demo import run_live_demo

    with _writing_to(out):
        out.mkdir(parents=True, exist_ok=True)  # here, so that a folder that cannot be made is one line
    # Keep the page up for a person at a terminal; a script (no terminal on stdin) gets its exit.
    run_live_demo(students, seed, out, web_port, stay=not leave and sys.stdin.isatty(), year=coverage_year)


@cli.command()
@_kafka_options
@click.option("--app-id", help="Consumer group and table prefix; workers with the same id share the partitions.")
@click.option("--store", type=click.Choice(["rocksdb", "memory"]), help="Person state store (default rocksdb).")
@click.option("--store-dir", type=click.Path(file_okay=False, path_type=Path), help="Where RocksDB keeps its files.")
@click.option("--web-host", help="Status page address (default 127.0.0.1).")
@click.option("--web-port", type=click.IntRange(1, 65535), help="Status page port (default 6066).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Policy TOML.")
@click.option(
    "--clock",
    type=click.Choice(["wall", "off"]),
    help="wall: tick from the wall clock; off: ticks come from elsewhere.",
)
@click.option("--tick-interval", type=float, help="Seconds between wall-clock ticks (default 3600).")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Worker log level (default warning)."
)
def worker(**flags: Any) -> None:
    """The streaming processor: funnel, rules and alerts on Kafka (embedded broker if none is configured)."""
    from streams.live.worker import run_worker

    run_worker(_settings(**flags))


@cli.command("http-source")
@_kafka_options
@click.option("--http-host", help="Address to listen on (default 127.0.0.1).")
@click.option("--http-port", type=click.IntRange(0, 65535), help="Port to listen on (default 8080).")
def http_source(**flags: Any) -> None:
    """Receive agency records over HTTP (tokens per agency in ENROLLBRIDGE_HTTP_TOKENS) and publish them."""
    from aiohttp import web

    from connectors.http_source import HttpSource, parse_tokens
    from connectors.identity import Secret

    settings = _settings(**flags)
    secret = Secret.from_environment()
    if settings.http_tokens is None:
        raise InputError(
            "ENROLLBRIDGE_HTTP_TOKENS is not set: give each agency a token, e.g. tax=<random>,education=<random>"
        )
    if not settings.bootstrap_servers:
        raise InputError("no Kafka configured: pass --bootstrap-servers or set ENROLLBRIDGE_BOOTSTRAP_SERVERS")
    source = HttpSource(settings, secret, parse_tokens(settings.http_tokens.get_secret_value()))
    click.echo(
        f"http-source: listening on http://{settings.http_host}:{settings.http_port}/v1/records/<source>", err=True
    )
    web.run_app(source.app(), host=settings.http_host, port=settings.http_port, print=None, access_log=None)


@cli.command()
@_kafka_options
@click.option("--pg-schema", help="PostgreSQL schema for the tables (default enrollbridge).")
@click.option("--app-id", help="The deployment's app id; the sink's consumer group is <app-id>-postgres-sink.")
def sink(**flags: Any) -> None:
    """Keep the alerts and coverage in PostgreSQL (DSN in ENROLLBRIDGE_PG_DSN): tables, history, figures."""
    import asyncio
    import contextlib

    from connectors.postgres_sink import run_sink

    settings = _settings(**flags)
    if not settings.bootstrap_servers:
        raise InputError("no Kafka configured: pass --bootstrap-servers or set ENROLLBRIDGE_BOOTSTRAP_SERVERS")
    click.echo(
        f"sink: {settings.topic_prefix} alerts and coverage into PostgreSQL schema {settings.pg_schema}", err=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sink(settings))


@cli.command()
@click.argument("alert_files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pool", help="Only this pool.")
@click.option("--year", type=int, help="Only this coverage year.")
@click.option("--pg-schema", help="PostgreSQL schema of the sink's tables (default enrollbridge).")
@click.option(
    "--events",
    "event_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Event files (e.g. education.events.jsonl) whose roster records name the schools; repeatable.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy TOML, for the months of a waiting period and what a repair would do (default: the shipped one).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write into.")
def worklist(
    alert_files: tuple[Path, ...],
    pool: str | None,
    year: int | None,
    pg_schema: str | None,
    event_files: tuple[Path, ...],
    policy_file: Path | None,
    out: Path,
) -> None:
    """Outreach work lists of open alerts, per county, per school and per agency, as CSV and XLSX (no
    names of people).

    From ALERT_FILES (alert records as JSON Lines, e.g. a replay's output) when given, else from the
    sink's tables in PostgreSQL (ENROLLBRIDGE_PG_DSN). School names come from the roster records of
    --events; without them schools are shown by code."""
    from enrollbridge.names import SchoolNames
    from enrollbridge.worklist import open_alerts, write_worklists
    from schemas.models import AlertRecord

    if alert_files:
        from pydantic import ValidationError

        from connectors.fields import printable
        from connectors.identity import redact

        records = []
        for path in alert_files:
            for number, line in enumerate(path.read_bytes().splitlines(), start=1):
                if not line.strip():  # blank lines are no records, as in replay
                    continue
                try:
                    records.append(AlertRecord.model_validate_json(line))
                except ValidationError as error:
                    # A validator's message can quote the value: an identity number typed in is masked.
                    why = printable(redact(first_problem(error), only_valid=False), 200)
                    raise InputError(f"{path}:{number}: not an alert record: {why}") from None
        alerts = [
            a for a in open_alerts(records) if (pool is None or a.pool == pool) and (year in (None, a.coverage_year))
        ]
    else:
        from enrollbridge.history import SinkHistory

        settings = _settings(pg_schema=pg_schema)
        if settings.pg_dsn is None:
            raise InputError("give alert files, or set ENROLLBRIDGE_PG_DSN to read the sink's tables")
        with SinkHistory(settings.pg_dsn.get_secret_value(), settings.pg_schema) as history:
            alerts = history.open_alerts(pool, year)
    from streams.core.policy import load_policies

    schools = SchoolNames.from_event_files(event_files)
    policies = load_policies(policy_file)
    with _writing_to(out):
        written = write_worklists(alerts, out, schools, policies)
    click.echo(
        f"{written.rows} open alerts in work lists for {written.counties} counties, {written.schools} schools "
        f"and {written.agencies} agencies: {out}"
    )


@cli.command()
@click.option("--pool", required=True, help="City-level pool code, e.g. 450200.")
@click.option("--year", required=True, type=int, help="Coverage year.")
@click.option("--as-of", "as_of", required=True, help="Report date (YYYY-MM-DD): figures at the end of that day.")
@click.argument("event_files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Policy TOML.")
@click.option("--pg-schema", help="PostgreSQL schema of the sink's tables (default enrollbridge).")
@click.option("--out", default=Path("."), show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--pdf", is_flag=True, help="Also print the report to PDF with headless Chromium (A4 landscape).")
def report(
    pool: str,
    year: int,
    as_of: str,
    event_files: tuple[Path, ...],
    policy_file: Path | None,
    pg_schema: str | None,
    out: Path,
    pdf: bool,
) -> None:
    """The monthly county report (按月通报) as HTML with a chart and as XLSX (and PDF with --pdf).

    From a replay of EVENT_FILES (connector outputs or an archived log) when given, else from the
    sink's history in PostgreSQL (ENROLLBRIDGE_PG_DSN)."""
    from enrollbridge.report import build_report, write_html, write_pdf, write_xlsx
    from schemas.times import format_date, parse_date
    from streams.core.policy import load_policies

    try:
        as_of_date = parse_date(as_of)
        format_date(as_of_date + 1)  # the report's cut-off is the start of the next day
    except (ValueError, OverflowError):
        raise InputError(f"--as-of {as_of!r}: expected a date YYYY-MM-DD before 9999-12-31") from None
    policy = load_policies(policy_file).get(pool, year)
    if policy is None:
        raise InputError(f"the policies have no entry for pool {pool}, year {year}")
    if event_files:
        from streams.replay import replay as run_replay

        alerts: list[AlertRecord] = []
        coverage: list[CoverageRecord] = []
        # Every record, also those recorded after the report date: figures count by business time, as
        # the sink's history does.
        run_replay(event_files, load_policies(policy_file), alerts.append, on_coverage=coverage.append)
    else:
        from enrollbridge.history import SinkHistory

        settings = _settings(pg_schema=pg_schema)
        if settings.pg_dsn is None:
            raise InputError("give event files to replay, or set ENROLLBRIDGE_PG_DSN to read the sink's history")
        with SinkHistory(settings.pg_dsn.get_secret_value(), settings.pg_schema) as history:
            coverage, alerts = history.history(pool, year)
    result = build_report(policy, as_of_date, coverage, alerts)
    as_of = format_date(as_of_date)  # the name and the summary show the day, not what was typed ("20231031 ")
    stem = out / f"report-{pool}-{year}-{as_of}"
    with _writing_to(out):
        out.mkdir(parents=True, exist_ok=True)
        write_html(result, stem.with_suffix(".html"))
        write_xlsx(result, stem.with_suffix(".xlsx"))
    rate = f"{result.total.rate:.2%}" if result.total.rate is not None else "—"
    click.echo(
        f"{policy.describe()} as of {as_of}: {result.total.covered} of {result.total.on_roster} covered ({rate})"
    )
    click.echo(f"report: {stem.with_suffix('.html')} and {stem.with_suffix('.xlsx')}")
    if pdf:
        write_pdf(stem.with_suffix(".html"), stem.with_suffix(".pdf"))
        click.echo(f"report: {stem.with_suffix('.pdf')}")


@cli.command()
@_kafka_options
@click.option("--pool", default="450200", show_default=True, help="Pool to show.")
@click.option("--year", default=2024, show_default=True, type=int, help="Coverage year to show.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Policy TOML.")
@click.option("--dashboard-host", help="Address to listen on (default 127.0.0.1).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), help="Port (default 8050).")
def dashboard(pool: str, year: int, policy_file: Path | None, **flags: Any) -> None:
    """The live dashboard (login token in ENROLLBRIDGE_DASHBOARD_TOKEN, or one is made up and shown)."""
    import asyncio
    import contextlib

    from enrollbridge.dashboard import new_token, serve
    from streams.core.policy import load_policies

    settings = _settings(**flags)
    if not settings.bootstrap_servers:
        raise InputError("no Kafka configured: pass --bootstrap-servers or set ENROLLBRIDGE_BOOTSTRAP_SERVERS")
    policy = load_policies(policy_file).get(pool, year)
    if policy is None:
        raise InputError(f"the policies have no entry for pool {pool}, year {year}")
    token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else new_token()
    shown = "<ENROLLBRIDGE_DASHBOARD_TOKEN>" if settings.dashboard_token else token
    click.echo(f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}/login?token={shown}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, policy, token, settings.dashboard_host, settings.dashboard_port))


@cli.command()
@_kafka_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Archive directory.")
@click.option(
    "--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Policy TOML the worker uses."
)
@click.option("--app-id", help="The workers' consumer group, to wait until they have processed the log.")
@click.option("--wait", "wait_seconds", default=120.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to wait for the workers to catch up before the alerts are read.")  # fmt: skip
def archive(out: Path, policy_file: Path | None, wait_seconds: float, **flags: Any) -> None:
    """Copy the unified log and the alerts from Kafka into a hash-chained archive (new segments only)."""
    from audit.archive import run_archive
    from streams.core.policy import DEFAULT_POLICY_FILE

    settings = _settings(**flags)
    if not settings.bootstrap_servers:
        raise InputError("no Kafka configured: pass --bootstrap-servers or set ENROLLBRIDGE_BOOTSTRAP_SERVERS")
    run_archive(settings, out, policy_file or DEFAULT_POLICY_FILE, wait_seconds)


@cli.group()
def audit() -> None:
    """Check archives."""


@audit.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--head", "expected_head", help="The manifest head recorded when the archive was written.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Replay with this policy instead of the archived one.")  # fmt: skip
def verify(archive: Path, expected_head: str | None, policy_file: Path | None) -> None:
    """Verify an archive: exit 0 verified, 3 tampered, 4 diverged (2: it could not be read)."""
    from audit.manifest import ManifestError
    from audit.verify import verify_archive

    try:
        verdict = verify_archive(archive, expected_head, policy_file)
    except ManifestError as error:
        raise InputError(str(error)) from None
    click.echo(verdict.render())
    sys.exit(verdict.exit_code)


@cli.command()
@click.option("--students", default=100_000, show_default=True, help="Season size for replay and ingest.")
@click.option("--live-students", default=30_000, show_default=True,
              help="Season size for the live runs (the fastest contender must commit several times).")  # fmt: skip
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 20), help="Runs per figure.")
@click.option(
    "--memory-persons", default=10_000_000, show_default=True, help="Persons in the RocksDB store, memory row."
)
@click.option("--quix/--no-quix", default=True, help="Include the Quix Streams baseline (bench extra).")
@click.option("--out", default=Path("BENCHMARKS.md"), show_default=True, type=click.Path(path_type=Path))
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), help="Keep the generated data here.")
@click.option("--only", multiple=True, type=click.Choice(BENCH_ROWS),
              help="Run only these rows (repeatable); the table is printed, BENCHMARKS.md left as it is.")  # fmt: skip
@click.option("--jobs", type=click.IntRange(1, 256), help="Processes for the every-core rows  [default: every core]")
def bench(**flags: Any) -> None:
    """Benchmarks against their baselines in one run: a table on the terminal and in BENCHMARKS.md."""
    try:
        from enrollbridge.bench.run import run_bench
    except ImportError as error:
        raise InputError(f"the benchmark needs its extra: pip install -e '.[bench]' ({error.name} missing)") from None
    click.echo(run_bench(**flags))


def main() -> None:
    cli(prog_name="enrollbridge")
