"""The demonstration season, and its offline path: generate, ingest, replay, summarise.

A season of a year with continuity rules (2025 on) comes with the two seasons before it as its
history, loaded first as a first deployment would (``synth --years``), so that waiting periods after
a lapse show; the rules run with the season's own policy file (its years only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connectors.identity import Secret
from connectors.ingest import ingest_lines
from enrollbridge.synth.season import SOURCES, SeasonGenerator, season_config
from infra.errors import InputError
from schemas.codec import JsonLinesWriter
from schemas.models import AlertRecord
from schemas.times import parse_instant
from streams.core.policy import PolicyBook, load_policies
from streams.core.summary import AlertTally
from streams.replay import replay

DEMO_POOL, DEMO_YEAR = "450200", 2024
HISTORY_SEASONS = 2  # seasons generated before a year with continuity rules


def demo_years(policies: PolicyBook, year: int) -> tuple[int, int]:
    """The seasons a demo of ``year`` generates: the year, and for a year with continuity rules the
    seasons before it that the policies have (at most two)."""
    policy = policies.get(DEMO_POOL, year)
    if policy is None:
        raise InputError(f"the policies have no entry for pool {DEMO_POOL}, year {year}")
    first = year
    if policy.continuity is not None:
        while first > year - HISTORY_SEASONS and policies.get(DEMO_POOL, first - 1) is not None:
            first -= 1
    return first, year


def prepare_season(
    out: Path, students: int, seed: int, secret: Secret, policies: PolicyBook, year: int = DEMO_YEAR
) -> tuple[dict[str, Any], list[Path]]:
    """Generate a Liuzhou season of ``year`` (with its history, see ``demo_years``) in ``out`` and read
    its agency files through the connectors.

    Returns the season's manifest and the connector outputs (one events file per agency).
    """
    first, last = demo_years(policies, year)
    config = season_config(policies, DEMO_POOL, first, last, students, seed, out)
    seasons = f" with the seasons {first}..{last - 1} before it" if first < last else ""
    click.echo(f"1/3 generating a season of {students} students for {config.policy.describe()}{seasons} in {out}")
    manifest = SeasonGenerator(config, secret).generate()
    click.echo("2/3 reading the agency files through the connectors")
    event_files = []
    for source in SOURCES:
        events_path = out / f"{source}.events.jsonl"
        with JsonLinesWriter(events_path) as events, JsonLinesWriter(out / f"{source}.dlq.jsonl") as dead:
            path = out / manifest["files"][source]["path"]
            summary = ingest_lines(source, [path], secret, events.write_lines, dead.write_lines)
        click.echo(f"    {source}: read {summary.read}, accepted {summary.accepted}, rejected {summary.rejected}")
        event_files.append(events_path)
    return manifest, event_files


def offline_season(
    out: Path, students: int, seed: int, secret: Secret, policies: PolicyBook, year: int = DEMO_YEAR
) -> AlertTally:
    """The season replayed from files with its own policy file; the alerts go to ``out/alerts.jsonl``."""
    manifest, event_files = prepare_season(out, students, seed, secret, policies, year)
    policies = load_policies(out / manifest["policy"])
    click.echo(f"3/3 replaying until {manifest['until']}")
    tally = AlertTally()
    with JsonLinesWriter(out / "alerts.jsonl") as alerts:

        def emit(alert: AlertRecord) -> None:
            alerts.write(alert)
            tally.add(alert)

        replay(event_files, policies, emit, until=parse_instant(manifest["until"]))
    click.echo(f"alerts: {out / 'alerts.jsonl'}")
    return tally
