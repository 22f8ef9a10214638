"""The demonstration season: generate, ingest, replay, summarise -- the whole offline path in one go."""

from __future__ import annotations

from pathlib import Path

import click

from connectors.identity import Secret
from connectors.ingest import ingest_files
from enrollbridge.synth.season import SOURCES, SeasonConfig, SeasonGenerator
from schemas.codec import JsonLinesWriter
from schemas.models import AlertRecord
from schemas.times import parse_instant
from streams.policy import PolicyBook, load_policies
from streams.replay import replay
from streams.summary import AlertTally

DEMO_POOL, DEMO_YEAR = "450200", 2024


def offline_season(
    out: Path, students: int, seed: int, secret: Secret, policies: PolicyBook | None = None
) -> AlertTally:
    """Run a Liuzhou 2024 season through connectors and the replay; return the alert tally."""
    policies = policies or load_policies()
    policy = policies.get(DEMO_POOL, DEMO_YEAR)
    assert policy is not None, "the shipped policies include Liuzhou 2024"
    click.echo(f"1/3 generating a season of {students} students for {policy.describe()} in {out}")
    manifest = SeasonGenerator(
        SeasonConfig(DEMO_POOL, DEMO_YEAR, students, seed, out, policy, policies), secret
    ).generate()
    click.echo("2/3 ingesting the agency files")
    event_files = []
    for source in SOURCES:
        events_path = out / f"{source}.events.jsonl"
        with JsonLinesWriter(events_path) as events, JsonLinesWriter(out / f"{source}.dlq.jsonl") as dead:
            summary = ingest_files(source, [out / manifest["files"][source]["path"]], secret, events.write, dead.write)
        click.echo(f"    {source}: read {summary.read}, accepted {summary.accepted}, rejected {summary.rejected}")
        event_files.append(events_path)
    click.echo(f"3/3 replaying until {manifest['until']}")
    tally = AlertTally()
    with JsonLinesWriter(out / "alerts.jsonl") as alerts:

        def emit(alert: AlertRecord) -> None:
            alerts.write(alert)
            tally.add(alert)

        replay(event_files, policies, emit, until=parse_instant(manifest["until"]))
    click.echo(f"alerts: {out / 'alerts.jsonl'}")
    return tally
