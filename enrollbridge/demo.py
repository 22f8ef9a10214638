"""The demonstration season, and its offline path: generate, ingest, replay, summarise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connectors.identity import Secret
from connectors.ingest import ingest_files
from enrollbridge.synth.season import SOURCES, SeasonConfig, SeasonGenerator
from schemas.codec import JsonLinesWriter
from schemas.models import AlertRecord
from schemas.times import parse_instant
from streams.core.policy import PolicyBook
from streams.core.summary import AlertTally
from streams.replay import replay

DEMO_POOL, DEMO_YEAR = "450200", 2024


def prepare_season(
    out: Path, students: int, seed: int, secret: Secret, policies: PolicyBook
) -> tuple[dict[str, Any], list[Path]]:
    """Generate a Liuzhou 2024 season in ``out`` and read its agency files through the connectors.

    Returns the season's manifest and the connector outputs (one events file per agency).
    """
    policy = policies.get(DEMO_POOL, DEMO_YEAR)
    if policy is None:
        raise click.ClickException(f"the policies have no entry for pool {DEMO_POOL}, year {DEMO_YEAR}")
    click.echo(f"1/3 generating a season of {students} students for {policy.describe()} in {out}")
    manifest = SeasonGenerator(
        SeasonConfig(DEMO_POOL, DEMO_YEAR, students, seed, out, policy, policies), secret
    ).generate()
    click.echo("2/3 reading the agency files through the connectors")
    event_files = []
    for source in SOURCES:
        events_path = out / f"{source}.events.jsonl"
        with JsonLinesWriter(events_path) as events, JsonLinesWriter(out / f"{source}.dlq.jsonl") as dead:
            summary = ingest_files(source, [out / manifest["files"][source]["path"]], secret, events.write, dead.write)
        click.echo(f"    {source}: read {summary.read}, accepted {summary.accepted}, rejected {summary.rejected}")
        event_files.append(events_path)
    return manifest, event_files


def offline_season(out: Path, students: int, seed: int, secret: Secret, policies: PolicyBook) -> AlertTally:
    """The season replayed from files; the alerts go to ``out/alerts.jsonl``."""
    manifest, event_files = prepare_season(out, students, seed, secret, policies)
    click.echo(f"3/3 replaying until {manifest['until']}")
    tally = AlertTally()
    with JsonLinesWriter(out / "alerts.jsonl") as alerts:

        def emit(alert: AlertRecord) -> None:
            alerts.write(alert)
            tally.add(alert)

        replay(event_files, policies, emit, until=parse_instant(manifest["until"]))
    click.echo(f"alerts: {out / 'alerts.jsonl'}")
    return tally
