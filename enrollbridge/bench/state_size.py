"""What a person's state costs per coverage year, and that ``history_years`` bounds it.

    python -m enrollbridge.bench.state_size [--persons 1000000] [--seasons 8] [--history-years 3]

Each person is a student on a roster (one entry, with the school's name) who registers and pays once a
season, season after season; the clock moves a year each season, and the state forgets the coverage
years the policy file's ``history_years`` no longer keeps, as the engine does when it touches a state.
After each season every state is dumped in its stored form (what the worker's table and changelog
hold) and the sizes are summed: the bytes a state gains per season are the cost per person per year,
and once the horizon is reached they stop growing. In process, no Kafka: the sizes are those of
``streams.core.state.dump_state``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from schemas.models import PaymentChange, RegistrationChange, RosterChange, SourceEvent
from schemas.times import parse_instant
from streams.core.policy import PolicyBook, load_policies
from streams.core.rules import coverage_by_year
from streams.core.state import PersonState, dump_state

FIRST_SEASON = 2025
COUNTIES = ("450202", "450203", "450204", "450205", "450206", "450222", "450223", "450224", "450225", "450226")


@dataclass
class StateSizes:
    persons: int
    history_years: int | None
    total_bytes: list[int] = field(default_factory=list)  # all states' dumps after each season
    seconds: float = 0.0

    def per_person(self) -> list[float]:
        return [total / self.persons for total in self.total_bytes]

    def per_year(self) -> float:
        """Bytes a state gains per season while it forgets nothing yet (after the first season, which
        also holds the roster entry): with the clock in the collection period for season S, the state
        holds S - 1 - history_years to S."""
        sizes = self.per_person()
        grown = min(len(sizes) - 1, len(sizes) if self.history_years is None else self.history_years + 1)
        return (sizes[grown] - sizes[0]) / grown if grown > 0 else 0.0

    def render(self) -> str:
        sizes = self.per_person()
        lines = [
            f"{self.persons:,} persons, one registration and one payment a season, history_years = "
            f"{self.history_years}; dumped in {self.seconds:.0f} s",
            "seasons  bytes per person  all persons (MiB)",
            *(
                f"{season:>7}  {size:>16.1f}  {total / 2**20:>17.1f}"
                for season, (size, total) in enumerate(zip(sizes, self.total_bytes, strict=True), start=1)
            ),
            f"bytes per person per year: {self.per_year():.1f}",
            f"bytes per person once the horizon is reached: {sizes[-1]:.1f}",
        ]
        return "\n".join(lines)


class _Ids:
    """Event ids as the connectors make them (32 hex), cheaply: the sizes depend only on the length."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"


def _season_events(person: int, key: str, season: int, event_id: Callable[[], str]) -> list[SourceEvent]:
    county = COUNTIES[person % len(COUNTIES)]
    registered = parse_instant(f"{season - 1}-10-{1 + person % 28:02d}T09:{person % 60:02d}:17")
    paid = registered + 3_600_000
    masked = f"{county}********{person % 10_000:04d}"
    # model_construct: the events as the log carries them (enums as their values), without validating
    # a million of them again.
    registration: dict[str, Any] = dict(
        event_id=event_id(), person_key=key, occurred_at=registered, masked_id=masked, insurance_type="RESIDENT",
        region=county, coverage_year=season, action="REGISTERED", enrollment_ref=f"CB450200-{person:010d}{season}",
        channel=None, recorded_at=None, id_type=None,
    )  # fmt: skip
    payment: dict[str, Any] = dict(
        event_id=event_id(), person_key=key, occurred_at=paid, masked_id=masked, coverage_year=season,
        amount_fen=44000, region=county, action="PAID", payment_ref=f"PJ450200-{person:010d}{season}",
        channel="微信", recorded_at=None, id_type=None, purpose=None,
    )  # fmt: skip
    return [RegistrationChange.model_construct(**registration), PaymentChange.model_construct(**payment)]


def _roster(person: int, key: str, event_id: Callable[[], str]) -> RosterChange:
    county = COUNTIES[person % len(COUNTIES)]
    fields: dict[str, Any] = dict(
        event_id=event_id(), person_key=key, occurred_at=parse_instant(f"{FIRST_SEASON - 1}-08-25T08:00"),
        masked_id=f"{county}********{person % 10_000:04d}", school_code=f"{county}{person % 300:04d}",
        school_name="柳州市第十二中学", school_type="JUNIOR_SECONDARY", school_region=county, action="ENROLLED",
        student_ref=f"XJ450200-{person:09d}", recorded_at=None, id_type=None,
    )  # fmt: skip
    return RosterChange.model_construct(**fields)


def measure(persons: int, seasons: int, policies: PolicyBook, progress: bool | None = None) -> StateSizes:
    """Sum the dumped states of ``persons`` students after each of ``seasons`` seasons."""
    sizes = StateSizes(persons, policies.history_years, [0] * seasons)
    event_id = _Ids(7)
    started = time.monotonic()
    for person in tqdm(
        range(persons), unit=" persons", desc="states", disable=None if progress is None else not progress
    ):
        key = hashlib.sha256(person.to_bytes(8, "big")).hexdigest()
        state = PersonState(f"450202********{person % 10_000:04d}")
        state.apply(_roster(person, key, event_id))
        for index in range(seasons):
            season = FIRST_SEASON + index
            for event in _season_events(person, key, season, event_id):
                state.apply(event)
            # The clock in the collection period of the season: what the engine forgets on touching the state.
            kept_from = policies.kept_from(parse_instant(f"{season - 1}-12-01T00:00"))
            if kept_from is not None and (state.past is None or state.past.before < kept_from):
                state.forget(kept_from, coverage_by_year(state, policies))
            sizes.total_bytes[index] += len(dump_state(state))
    sizes.seconds = time.monotonic() - started
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seasons", type=int, default=8)
    parser.add_argument("--history-years", type=int, default=None, help="Default: the shipped policy file's.")
    args = parser.parse_args()
    book = load_policies()
    history_years = book.history_years if args.history_years is None else args.history_years
    print(measure(args.persons, args.seasons, PolicyBook(book, history_years)).render())


if __name__ == "__main__":
    main()
