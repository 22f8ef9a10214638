"""The engine: drives the rules over one ordered stream (one partition of the unified log).

The engine owns the order of work; the store owns what must survive it: person states, the clock
(the time of the latest tick) and the due times of payment grace periods. The offline replay and
the live Faust worker drive the same engine; only the store differs (a dict, or a Faust table).

Years of history: whenever the engine touches a person's state it first forgets the coverage years
the policy file's ``history_years`` no longer keeps at the clock's time (streams.core.state), so a
state holds a bounded number of years however many seasons the engine runs; a record of a forgotten
year is left out and handed to ``on_forgotten``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from schemas.models import (
    AlertRecord,
    ClockTick,
    CoverageRecord,
    LogEvent,
    PaymentChange,
    RegistrationChange,
    SourceEvent,
)
from schemas.regions import pool_of
from streams.core.coverage import coverage_changes, coverage_timeline
from streams.core.policy import PolicyBook
from streams.core.rules import Cause, coverage_by_year, evaluate, grace_ended_unregistered
from streams.core.state import Change, PersonState

# Where a tick's re-evaluation of a person falls in the tick's order (Engine.tick).
TickPlace = tuple[int, int, str]


class PartitionStore(Protocol):
    """Everything the engine keeps for one partition."""

    def get(self, person_key: str) -> PersonState | None: ...

    def put(self, person_key: str, state: PersonState) -> None: ...

    def items_by_key(self) -> Iterable[tuple[str, PersonState]]:
        """Every person, in ascending ``person_key`` order (sweeps must not depend on arrival order)."""
        ...

    def load_now(self) -> int | None: ...

    def save_now(self, now: int) -> None: ...

    def add_due(self, due: int, person_key: str) -> None:
        """Re-evaluate ``person_key`` at the first tick at or after ``due``."""
        ...

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """(due time, person_key) of the persons whose due time is at or before ``now``, in that order,
        forgotten."""
        ...


class MemoryStore:
    """A partition held in memory (the offline replay)."""

    def __init__(self) -> None:
        self.states: dict[str, PersonState] = {}
        self.now: int | None = None
        self._due: list[tuple[int, str]] = []

    def get(self, person_key: str) -> PersonState | None:
        return self.states.get(person_key)

    def put(self, person_key: str, state: PersonState) -> None:
        self.states[person_key] = state

    def items_by_key(self) -> Iterator[tuple[str, PersonState]]:
        for person_key in sorted(self.states):
            yield person_key, self.states[person_key]

    def load_now(self) -> int | None:
        return self.now

    def save_now(self, now: int) -> None:
        self.now = now

    def add_due(self, due: int, person_key: str) -> None:
        heapq.heappush(self._due, (due, person_key))

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        fired = []
        while self._due and self._due[0][0] <= now:
            fired.append(heapq.heappop(self._due))
        return fired

    def __len__(self) -> int:
        return len(self.states)


class Engine:
    """Rules over one ordered stream of events and ticks."""

    def __init__(
        self,
        policies: PolicyBook,
        store: PartitionStore,
        on_coverage: Callable[[CoverageRecord], None] | None = None,
        on_overflow: Callable[[SourceEvent], None] | None = None,
        on_forgotten: Callable[[SourceEvent], None] | None = None,
    ) -> None:
        """``on_coverage``, when given, receives a CoverageRecord for each roster student's coverage
        status that an event changed (the figures' source); without it none is computed.
        ``on_overflow`` receives each event that did not fit its person's state (streams.core.state),
        ``on_forgotten`` each event of a coverage year its person's state has forgotten."""
        self.policies = policies
        self.store = store
        self.on_coverage = on_coverage
        self.on_overflow = on_overflow
        self.on_forgotten = on_forgotten
        self.now = store.load_now()

    def process(self, event: LogEvent) -> list[AlertRecord]:
        """Apply one event or tick; return the alert transitions it causes, in order."""
        if isinstance(event, ClockTick):
            return [alert for _, alerts in self.tick(event) for alert in alerts]
        return self._person_event(event)

    def _person_event(self, event: SourceEvent) -> list[AlertRecord]:
        state = self.store.get(event.person_key) or PersonState(masked_id=event.masked_id)
        forgot = self._forget(state)
        if isinstance(event, RegistrationChange | PaymentChange) and not state.kept(event.coverage_year):
            if forgot:
                self.store.put(event.person_key, state)
            if self.on_forgotten:
                self.on_forgotten(event)
            return []
        before = coverage_timeline(state, self.policies, event.occurred_at) if self.on_coverage else []
        overflow = state.overflow
        change = state.apply(event)
        if state.overflow != overflow or forgot:
            self.store.put(event.person_key, state)
        if state.overflow != overflow and self.on_overflow:
            self.on_overflow(event)
        if change is Change.NONE:
            return []
        cause = Cause(event.event_id, event.occurred_at)
        # Only a slot's current record matters to the rules; an earlier version changes past figures.
        alerts = evaluate(event.person_key, state, self.now, self.policies, cause) if change is Change.CURRENT else []
        self.store.put(event.person_key, state)
        if self.on_coverage:
            for record in coverage_changes(event.person_key, before, state, self.policies, cause):
                self.on_coverage(record)
        if change is Change.CURRENT and isinstance(event, PaymentChange) and event.action == "PAID":
            due = event.occurred_at + self.policies.grace_ms(pool_of(event.region), event.coverage_year)
            if self.now is None or due > self.now:
                self.store.add_due(due, event.person_key)
        return alerts

    def tick(self, tick: ClockTick) -> list[tuple[TickPlace, list[AlertRecord]]]:
        """Apply a tick: each person it re-evaluated with records to show, with the place of that
        re-evaluation in the tick's fixed order -- ``(0, 0, person_key)`` in the sweep of a first
        checkpoint (ascending person_key), then ``(1, due time, person_key)`` for the payers whose grace
        period's due time it passed (in that order). ``replay --jobs`` merges its shares' records by it."""
        if self.now is not None and tick.occurred_at <= self.now:
            return []  # a repeated or late tick: time never goes back
        before, self.now = self.now, tick.occurred_at
        self.store.save_now(self.now)
        cause = Cause(tick.event_id, tick.occurred_at, tuple(sorted(tick.incomplete or ())))
        evaluated: list[tuple[TickPlace, list[AlertRecord]]] = []
        passed_pools = {p.pool for p in self.policies.first_checkpoints_passed_between(before, self.now)}
        if passed_pools:
            for person_key, state in self.store.items_by_key():
                if state.roster_pools() & passed_pools and (alerts := self._reevaluate(person_key, state, cause)):
                    evaluated.append(((0, 0, person_key), alerts))
        for due, person_key in self.store.pop_due(self.now):
            payer = self.store.get(person_key)
            # Only a grace period's end can have changed since the payer was last evaluated; most payers
            # have registered by then, and evaluating each of them was a fifth of the season.
            if payer is not None and (alerts := self._reevaluate(person_key, payer, cause, only_if_grace_ended=True)):
                evaluated.append(((1, due, person_key), alerts))
        return evaluated

    def _reevaluate(
        self, person_key: str, state: PersonState, cause: Cause, only_if_grace_ended: bool = False
    ) -> list[AlertRecord]:
        forgot = self._forget(state)
        if only_if_grace_ended and not grace_ended_unregistered(state, self.now, self.policies):
            if forgot:
                self.store.put(person_key, state)
            return []
        alerts = evaluate(person_key, state, self.now, self.policies, cause)
        if alerts or forgot:
            self.store.put(person_key, state)
        return alerts

    def _forget(self, state: PersonState) -> bool:
        """Forget the coverage years the policy file no longer keeps at the clock's time."""
        kept_from = self.policies.kept_from(self.now)
        if kept_from is None or (state.past is not None and state.past.before >= kept_from):
            return False
        return state.forget(kept_from, coverage_by_year(state, self.policies))
