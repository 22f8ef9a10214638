"""The ``enrollbridge`` command (SPEC section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from enrollbridge.errors import InputError

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
    "--encoding", help="Text encoding of CSV/JSON Lines files (default: UTF-8, or GB18030 when the file is not UTF-8)."
)
def ingest(source: str, files: tuple[Path, ...], out: Path | None, dlq: Path | None, encoding: str | None) -> None:
    """Validate, pseudonymise and write the records of one agency SOURCE."""
    from connectors.identity import Secret
    from connectors.ingest import ingest_files
    from schemas.codec import JsonLinesWriter

    secret = Secret.from_environment()
    if out is None:
        raise InputError("publishing to Kafka is not available yet: pass --out EVENTS.jsonl")
    dlq = dlq or out.with_name(out.name.removesuffix(".jsonl") + ".dlq.jsonl")
    with JsonLinesWriter(out) as events, JsonLinesWriter(dlq) as dead_letters:
        summary = ingest_files(source, files, secret, events.write, dead_letters.write, encoding=encoding)
    for counts in summary.files:
        notes = []
        if counts.blank_lines:
            notes.append(f"{counts.blank_lines} blank lines skipped")
        if counts.ignored_columns:
            notes.append(f"ignored columns: {', '.join(counts.ignored_columns)}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        click.echo(
            f"  {counts.path}: read {counts.read}, accepted {counts.accepted}, rejected {counts.rejected}{extra}"
        )
    click.echo(f"{source}: read {summary.read}, accepted {summary.accepted}, rejected {summary.rejected}")
    click.echo(f"events: {out}  dead letters: {dlq}")


def _instant_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from schemas.times import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
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
def replay(files: tuple[Path, ...], policy_file: Path | None, until: int | None, out: Path) -> None:
    """Run the rules offline over connector outputs or an archived log (JSON Lines or Avro)."""
    from schemas.codec import JsonLinesWriter
    from schemas.models import AlertRecord
    from streams.policy import load_policies
    from streams.replay import replay as run_replay
    from streams.summary import AlertTally

    policies = load_policies(policy_file)
    tally = AlertTally()
    with JsonLinesWriter(out) as alerts:

        def emit(alert: AlertRecord) -> None:
            alerts.write(alert)
            tally.add(alert)

        result = run_replay(files, policies, emit, until=until)
    mode = "archived log, order kept" if result.mode == "log" else "connector outputs, merged by occurred_at"
    click.echo(f"replayed {result.events} events and {result.ticks} ticks ({mode}) for {result.persons} persons")
    if result.skipped_after_until:
        click.echo(f"{result.skipped_after_until} events after --until were not replayed")
    click.echo(f"alerts: {out}")
    click.echo(tally.render())


def main() -> None:
    cli(prog_name="enrollbridge")
