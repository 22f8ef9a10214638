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


def main() -> None:
    cli(prog_name="enrollbridge")
