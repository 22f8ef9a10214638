"""Policy as data (SPEC section 5): contribution, collection period, checkpoints, waiting period,
grace days, subsidy shares and continuity rules per pooling area and coverage year, loaded from TOML;
and how many coverage years of history a person's state keeps (``history_years``)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.errors import InputError
from schemas.models import HardshipCategory
from schemas.regions import is_region_code, pool_of
from schemas.times import (
    days_to_date,
    end_of_local_day,
    format_date,
    local_day,
    parse_date,
    start_of_local_day,
)

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policies" / "default.toml"
DEFAULT_GRACE_DAYS = 7
MAX_CONTRIBUTION_YUAN = 100_000  # far above any personal contribution; bounds what a typo can do
FIRST_YEAR, LAST_YEAR = 1990, 2100  # the coverage years agency records may carry (BAD_YEAR)
MS_PER_DAY = 86_400_000


def _yuan_to_fen(value: Any) -> int:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount in yuan: {value!r}") from None
    # NaN, Infinity and 1e9999 are numbers to Decimal (and to TOML); none is a contribution.
    if not amount.is_finite() or not 0 <= amount <= MAX_CONTRIBUTION_YUAN:
        raise ValueError(f"contribution must be an amount in yuan from 0 to {MAX_CONTRIBUTION_YUAN}: {value!r}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"contribution must have at most two decimals: {value!r}")
    return int(amount * 100)


def _date(value: Any) -> int:
    if isinstance(value, str):
        return parse_date(value)
    if hasattr(value, "isoformat"):  # TOML local dates arrive as datetime.date
        return parse_date(value.isoformat())
    raise ValueError(f"not a date: {value!r}")


def _category(value: str) -> str:
    return HardshipCategory(value).value  # ValueError names the unknown category


LocalDays = Annotated[int, BeforeValidator(_date)]


class Continuity(BaseModel):
    """The continuity rules of a coverage year (SPEC section 5, ``[policy.continuity]``): a waiting period
    that grows with the years a person's coverage lapsed, shortened by repair payments. The defaults
    are the national figures of 国办发〔2024〕38号; provinces set their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt key must not fall back to a default

    counted_from: Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR)] = 2025
    months_per_lapsed_year: Annotated[int, Field(ge=0, le=12)] = 1
    long_lapse_years: Annotated[int, Field(ge=1, le=100)] = 4
    long_lapse_min_months: Annotated[int, Field(ge=0, le=60)] = 6

    def months(self, waiting_period_months: int, lapsed: int, repaired: int) -> int:
        """The waiting period in months: the fixed months, one step per lapsed year not repaired, and
        at least the floor after a long lapse."""
        months = waiting_period_months + self.months_per_lapsed_year * max(0, lapsed - repaired)
        if lapsed >= self.long_lapse_years:
            months = max(months, self.long_lapse_min_months)
        return months


class Policy(BaseModel):
    """The policy of one pooling area for one coverage year."""

    model_config = ConfigDict(frozen=True, extra="allow")

    pool: str
    coverage_year: Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR)]
    contribution_fen: Annotated[int, BeforeValidator(_yuan_to_fen)] = Field(alias="contribution")
    collection_start: LocalDays
    collection_end: LocalDays
    checkpoints: tuple[LocalDays, ...] = ()
    waiting_period_months: Annotated[int, Field(ge=0, le=12)] = 3
    payment_grace_days: Annotated[int, Field(ge=0, le=366)] = DEFAULT_GRACE_DAYS
    subsidy: dict[Annotated[str, AfterValidator(_category)], Annotated[float, Field(ge=0.0, le=1.0)]] = {}
    continuity: Continuity | None = None  # absent: the year has no continuity rules (as before 2025)
    name: str | None = None

    @field_validator("pool")
    @classmethod
    def _pool_code(cls, value: str) -> str:
        if not is_region_code(value) or pool_of(value) != value:
            raise ValueError(f"pool must be a city-level 6-digit code ending in 00, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.collection_end < self.collection_start:
            raise ValueError("collection_end is before collection_start")
        # Collection runs in the year before the coverage year (a city may run it into the year
        # itself); dates outside those two years are typos, and would make checkpoints never pass.
        first, last = parse_date(f"{self.coverage_year - 1}-01-01"), parse_date(f"{self.coverage_year}-12-31")
        for label, days in (
            ("collection_start", (self.collection_start,)),
            ("collection_end", (self.collection_end,)),
            ("checkpoints", self.checkpoints),
        ):
            outside = [format_date(day) for day in days if not first <= day <= last]
            if outside:
                raise ValueError(
                    f"{label} {', '.join(outside)} outside the collection years {self.coverage_year - 1}-"
                    f"{self.coverage_year} of coverage year {self.coverage_year}"
                )
        if self.continuity is not None and self.continuity.counted_from > self.coverage_year:
            counted_from = self.continuity.counted_from
            raise ValueError(f"continuity.counted_from {counted_from} is after the coverage year {self.coverage_year}")
        if not self.checkpoints:
            object.__setattr__(self, "checkpoints", _month_ends(self.collection_start, self.collection_end))
        else:
            object.__setattr__(self, "checkpoints", tuple(sorted(set(self.checkpoints))))
        return self

    @cached_property
    def first_checkpoint_passes_at(self) -> int:
        """The instant from which a tick makes the first checkpoint passed: the end of its local day."""
        return end_of_local_day(self.checkpoints[0])

    @cached_property
    def collection_end_at(self) -> int:
        """Last instant of the collection period (its end date is inclusive)."""
        return end_of_local_day(self.collection_end)

    def checkpoint_tick_times(self) -> list[int]:
        """Where an offline replay puts checkpoint ticks: 00:00 China Standard Time of the next day."""
        return [start_of_local_day(day + 1) for day in self.checkpoints]

    def expected_fen(self, categories: Iterable[str]) -> int:
        """The personal contribution after the highest subsidy share among the given active categories,
        rounded half up to the fen."""
        share = max((self.subsidy.get(category, 0.0) for category in categories), default=0.0)
        exact = Decimal(self.contribution_fen) * (Decimal(1) - Decimal(str(share)))
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def describe(self) -> str:
        return f"{self.name or self.pool} {self.coverage_year}"

    def to_toml(self) -> str:
        """This policy as a ``[[policy]]`` entry that ``load_policies`` reads back unchanged."""
        lines = ["[[policy]]", f'pool = "{self.pool}"']
        if self.name:
            lines.append(tomli_w.dumps({"name": self.name}).strip())  # quotes and control characters escaped
        lines += [
            f"coverage_year = {self.coverage_year}",
            f'contribution = "{self.contribution_fen // 100}.{self.contribution_fen % 100:02d}"',
            f'collection_start = "{format_date(self.collection_start)}"',
            f'collection_end = "{format_date(self.collection_end)}"',
            "checkpoints = [" + ", ".join(f'"{format_date(day)}"' for day in self.checkpoints) + "]",
            f"waiting_period_months = {self.waiting_period_months}",
            f"payment_grace_days = {self.payment_grace_days}",
            "",
            "[policy.subsidy]",
            *(f"{category} = {share}" for category, share in sorted(self.subsidy.items())),
        ]
        if self.continuity is not None:
            lines += ["", "[policy.continuity]", *(f"{key} = {value}" for key, value in self.continuity)]
        return "\n".join(lines) + "\n"


def _month_ends(start: int, end: int) -> tuple[int, ...]:
    """The last day of each month of the collection period (the SPEC's default checkpoints)."""
    ends: list[int] = []
    day = days_to_date(start)
    while True:
        next_month = day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1, day=1)
        month_end = parse_date(next_month.isoformat()) - 1
        ends.append(min(month_end, end))
        if month_end >= end:
            return tuple(ends)
        day = next_month


class PolicyBook:
    """All policies in force, looked up by (pool, coverage year), and the years of history a person's
    state keeps: with ``history_years`` N, the coverage years before the clock's calendar year minus N
    are forgotten (summarised; streams.core.state); None keeps every year."""

    def __init__(self, policies: Iterable[Policy], history_years: int | None = None) -> None:
        self.history_years = history_years
        self.by_key: dict[tuple[str, int], Policy] = {}
        for policy in policies:
            key = (policy.pool, policy.coverage_year)
            if key in self.by_key:
                raise InputError(f"two policies for pool {policy.pool} and coverage year {policy.coverage_year}")
            self.by_key[key] = policy
        self._owed: dict[tuple[str, int, tuple[str, ...]], int | None] = {}
        self._years_by_pool: dict[str, tuple[int, ...]] = {}
        for pool, year in sorted(self.by_key):
            self._years_by_pool[pool] = (*self._years_by_pool.get(pool, ()), year)

    def get(self, pool: str, year: int) -> Policy | None:
        return self.by_key.get((pool, year))

    def expected_fen(self, pool: str, year: int, categories: tuple[str, ...]) -> int | None:
        """What a person with these active hardship categories owes in (pool, year); None without a policy.
        Answers are remembered: there are few distinct combinations and the rules ask on every event."""
        key = (pool, year, categories)
        if key not in self._owed:
            policy = self.by_key.get((pool, year))
            self._owed[key] = None if policy is None else policy.expected_fen(categories)
        return self._owed[key]

    def years_of(self, pool: str) -> tuple[int, ...]:
        return self._years_by_pool.get(pool, ())

    def grace_ms(self, pool: str, year: int) -> int:
        policy = self.by_key.get((pool, year))
        return (policy.payment_grace_days if policy else DEFAULT_GRACE_DAYS) * MS_PER_DAY

    def __iter__(self) -> Any:
        return iter(self.by_key.values())

    def __len__(self) -> int:
        return len(self.by_key)

    def first_checkpoints_passed_between(self, before: int | None, now: int) -> list[Policy]:
        """Policies whose first checkpoint becomes passed when the clock moves from ``before`` to ``now``."""
        return [
            policy
            for policy in self.by_key.values()
            if (before is None or before < policy.first_checkpoint_passes_at)
            and policy.first_checkpoint_passes_at <= now
        ]

    def checkpoint_tick_times(self) -> list[int]:
        return sorted({time for policy in self for time in policy.checkpoint_tick_times()})

    def kept_from(self, now: int | None) -> int | None:
        """The first coverage year a person's state keeps at clock time ``now`` (None: every year)."""
        if self.history_years is None or now is None:
            return None
        return days_to_date(local_day(now)).year - self.history_years

    def to_toml(self, pools: Iterable[str] | None = None) -> str:
        """The book (or the given pools' policies) as a policy file that ``load_policies`` reads back."""
        wanted = None if pools is None else set(pools)
        head = [] if self.history_years is None else [f"history_years = {self.history_years}", ""]
        entries = [p.to_toml() for key, p in sorted(self.by_key.items()) if wanted is None or key[0] in wanted]
        return "\n".join(head) + "\n".join(entries)


def load_policies(path: Path | None = None) -> PolicyBook:
    """Read a policy TOML file (the shipped one by default); every problem names the entry and field."""
    path = path or DEFAULT_POLICY_FILE
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"{path}: cannot read policy file: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid TOML: {error}") from None
    entries = document.get("policy")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: no [[policy]] entries")
    history_years = document.get("history_years")
    if history_years is not None and (
        isinstance(history_years, bool) or not isinstance(history_years, int) or not 0 <= history_years <= 100
    ):
        raise InputError(f"{path}: history_years: a number of coverage years from 0 to 100, got {history_years!r}")
    policies = []
    for index, entry in enumerate(entries, start=1):
        try:
            policies.append(Policy.model_validate(entry))
        except ValidationError as error:
            where = _entry_label(entry, index)
            problems = "; ".join(
                f"{'.'.join(str(part) for part in detail['loc']) or 'entry'}: {detail['msg']}"
                for detail in error.errors(include_url=False, include_input=False)
            )
            raise InputError(f"{path}: {where}: {problems}") from None
    try:
        return PolicyBook(policies, history_years)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _entry_label(entry: Mapping[str, Any], index: int) -> str:
    pool, year = entry.get("pool"), entry.get("coverage_year")
    return f"[[policy]] #{index}" + (f" (pool {pool}, year {year})" if pool or year else "")
