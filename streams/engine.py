"""The engine: drives the rules over one ordered stream (one partition of the unified log).

It owns what lies outside one person: the store of person states, the clock (the time of the
latest tick) and the due times of payment grace periods. The offline replay and the live Faust
worker both feed events through ``process``; only the store differs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Protocol

from schemas.models import AlertRecord, ClockTick, LogEvent, PaymentChange, SourceEvent
from schemas.regions import pool_of
from streams.policy import PolicyBook
from streams.rules import Cause, evaluate
from streams.state import PersonState


class PersonStore(Protocol):
    """Where person states live: a dict in a replay, a Faust table in the worker."""

    def get(self, person_key: str) -> PersonState | None: ...

    def put(self, person_key: str, state: PersonState) -> None: ...

    def items_by_key(self) -> Iterable[tuple[str, PersonState]]:
        """Every person, in ascending ``person_key`` order (sweeps must not depend on arrival order)."""
        ...


class MemoryStore:
    """Person states in a dict."""

    def __init__(self) -> None:
        self.states: dict[str, PersonState] = {}

    def get(self, person_key: str) -> PersonState | None:
        return self.states.get(person_key)

    def put(self, person_key: str, state: PersonState) -> None:
        self.states[person_key] = state

    def items_by_key(self) -> Iterator[tuple[str, PersonState]]:
        for person_key in sorted(self.states):
            yield person_key, self.states[person_key]

    def __len__(self) -> int:
        return len(self.states)


class Engine:
    """Rules over one ordered stream of events and ticks."""

    def __init__(self, policies: PolicyBook, store: PersonStore, now: int | None = None) -> None:
        self.policies = policies
        self.store = store
        self.now = now
        # (due time, person_key): when a payment's grace period ends, its payer is re-evaluated.
        self._due: list[tuple[int, str]] = []

    def process(self, event: LogEvent) -> list[AlertRecord]:
        """Apply one event or tick; return the alert transitions it causes, in order."""
        if isinstance(event, ClockTick):
            return self._tick(event)
        return self._person_event(event)

    def _person_event(self, event: SourceEvent) -> list[AlertRecord]:
        state = self.store.get(event.person_key) or PersonState(masked_id=event.masked_id)
        if not state.apply(event):
            return []
        alerts = evaluate(event.person_key, state, self.now, self.policies, Cause(event.event_id, event.occurred_at))
        self.store.put(event.person_key, state)
        if isinstance(event, PaymentChange) and event.action == "PAID":
            self._schedule(
                event.person_key,
                event.occurred_at + self.policies.grace_ms(pool_of(event.region), event.coverage_year),
            )
        return alerts

    def _tick(self, tick: ClockTick) -> list[AlertRecord]:
        if self.now is not None and tick.occurred_at <= self.now:
            return []  # a repeated or late tick: time never goes back
        before, self.now = self.now, tick.occurred_at
        cause = Cause(tick.event_id, tick.occurred_at)
        alerts: list[AlertRecord] = []
        passed_pools = {p.pool for p in self.policies.first_checkpoints_passed_between(before, self.now)}
        if passed_pools:
            for person_key, state in self.store.items_by_key():
                if state.roster_pools() & passed_pools:
                    alerts.extend(self._reevaluate(person_key, state, cause))
        while self._due and self._due[0][0] <= self.now:
            _, person_key = heapq.heappop(self._due)
            payer = self.store.get(person_key)
            if payer is not None:
                alerts.extend(self._reevaluate(person_key, payer, cause))
        return alerts

    def _reevaluate(self, person_key: str, state: PersonState, cause: Cause) -> list[AlertRecord]:
        alerts = evaluate(person_key, state, self.now, self.policies, cause)
        if alerts:
            self.store.put(person_key, state)
        return alerts

    def _schedule(self, person_key: str, due: int) -> None:
        if self.now is None or due > self.now:
            heapq.heappush(self._due, (due, person_key))

    def rebuild_due_times(self) -> None:
        """Recompute grace-period due times from the stored states (after a restart or rebalance)."""
        self._due = []
        for person_key, state in self.store.items_by_key():
            for payment in state.payments.values():
                if payment.paid is not None:
                    grace = self.policies.grace_ms(payment.pool, payment.coverage_year)
                    self._schedule(person_key, payment.paid.occurred_at + grace)
