"""A synthetic season for one pooling area and coverage year, with its ground truth -- or several
seasons in a row (``--years 2025..2027``): the last is the current season, the earlier ones its
history.

Each student gets one profile for the last season: normal, or one anomaly. The anomaly decides the
records written for the student and the alerts the rules must produce, so part of the ground truth
is known by construction. Over several seasons each student also has a continuity profile for the
earlier ones: continuously covered, lapsed (covered once, then not), repaired (lapsed, and pays
repair contributions in the last season) or first-time (never covered before). The rest of the
truth (UNENROLLED and UNPAID, which depend on timing; WAITING_PERIOD, which depends on the years
covered) is computed by ``enrollbridge.synth.truth`` from the student's planned records, without the
rules.

Generation streams student by student: memory does not grow with the number of students.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from connectors.identity import Secret, check_character, person_key
from enrollbridge.synth.geography import AGES, TYPE_SHARES, School, counties_of, neighbour_pool, plan_schools
from enrollbridge.synth.output import SourceFile
from enrollbridge.synth.people import IdentityFactory, birth_date, legacy_form, random_name
from enrollbridge.synth.truth import (
    Continuity,
    Contribution,
    PlannedPayment,
    PlannedRegistration,
    PlannedStatus,
    SeasonTruth,
    StudentHistory,
    YearRules,
)
from infra.errors import InputError
from schemas.regions import pool_of
from schemas.times import (
    CST,
    MS_PER_DAY,
    add_months,
    days_to_date,
    format_date,
    start_of_local_day,
    year_bounds,
)
from streams.core.policy import Policy, PolicyBook

PROFILES = (
    "unenrolled",
    "left",
    "unpaid",
    "duplicate_pool",
    "duplicate_employee",
    "hardship_wrong_place",
    "overpaid",
    "subsidised_charged",
    "paid_unregistered",
    "late_payment",
    "hardship",
    "duplicate_cleaned",
)
DEFAULT_RATES: dict[str, float] = {
    "unenrolled": 0.04,  # on the roster, never registers
    "left": 0.005,  # never registers, leaves the school after the first checkpoint
    "unpaid": 0.03,  # registers, never pays (or pays too little)
    "duplicate_pool": 0.01,  # registered here and in another city
    "duplicate_employee": 0.008,  # resident and employee insurance at once
    "hardship_wrong_place": 0.005,  # hardship status approved elsewhere, registered here
    "overpaid": 0.01,  # paid twice; some get a refund
    "subsidised_charged": 0.003,  # fully subsidised, charged anyway; some get a refund
    "paid_unregistered": 0.005,  # paid, never registered
    "late_payment": 0.02,  # pays after the collection period: waiting period
    "hardship": 0.03,  # hardship status in the right place (no anomaly)
    "duplicate_cleaned": 0.005,  # registered here and in another city; the other registration is cancelled
    "redelivered": 0.01,  # share of rows delivered twice
    "bad_rows": 0.002,  # extra rows that must be dead-lettered
    "legacy_id": 0.5,  # share of pre-2000 numbers the tax bureau sends in the 15-digit form
    # Over several seasons (--years), how students were covered in the earlier ones; the rest continuously.
    "lapsed": 0.08,  # covered once (possibly before the first season), then not: a waiting period now
    "repaired": 0.04,  # lapsed, and pays repair contributions (修复缴费) in the last season
    "first_time": 0.05,  # never covered before the last season (not a lapse)
}
CONTINUITY_PROFILES = ("lapsed", "repaired", "first_time")
SOURCES = ("education", "insurance", "tax", "hardship")
_BAD_ROW_CODES: dict[str, tuple[str, ...]] = {
    "education": ("BAD_CHECK_CHARACTER", "BAD_BIRTH_DATE", "UNKNOWN_ENUM", "BAD_REGION", "BAD_TIME", "MISSING_FIELD"),
    "insurance": ("BAD_CHECK_CHARACTER", "UNKNOWN_ENUM", "BAD_REGION", "BAD_YEAR", "BAD_TIME", "MISSING_FIELD"),
    "tax": ("BAD_CHECK_CHARACTER", "BAD_AMOUNT", "NEGATIVE_AMOUNT", "BAD_REGION", "BAD_TIME", "MISSING_FIELD"),
    "hardship": ("BAD_CHECK_CHARACTER", "UNKNOWN_ENUM", "BAD_DATE", "BAD_REGION", "MISSING_FIELD"),
}
_REGION_FIELD = {"education": "school_region", "insurance": "region", "tax": "region", "hardship": "approval_region"}
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SeasonConfig:
    pool: str
    coverage_year: int
    students: int
    seed: int
    out: Path
    policy: Policy
    policies: PolicyBook
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    file_format: str = "csv"
    headers: str = "chinese"
    history: tuple[Policy, ...] = ()  # the policies of the earlier seasons, oldest first (--years)


def season_config(
    policies: PolicyBook, pool: str, first: int, last: int, students: int, seed: int, out: Path
) -> SeasonConfig:
    """A season of ``last`` with the seasons from ``first`` on as its history; each needs a policy."""
    found = []
    for year in range(first, last + 1):
        policy = policies.get(pool, year)
        if policy is None:
            raise InputError(f"no policy for pool {pool} and coverage year {year}; pass --policy with one")
        found.append(policy)
    return SeasonConfig(pool, last, students, seed, out, found[-1], policies, history=tuple(found[:-1]))


@dataclass
class _Student:
    """One student: identity, school, the rows written, and the planned history the truth is computed from."""

    number: str
    key: str
    name: str
    school: School
    student_ref: str
    history: StudentHistory
    rows: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    region: str | None = None  # where the student registers, once chosen (kept over the seasons)


def _time_text(ms: int, with_offset: bool) -> str:
    text = datetime.fromtimestamp(ms // 1000, CST).isoformat(sep="T" if with_offset else " ")
    return text if with_offset else text[:19]


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


class SeasonGenerator:
    """Writes the four agency files, the ground truth and a manifest for one season."""

    def __init__(self, config: SeasonConfig, secret: Secret) -> None:
        self.config = config
        self.secret = secret
        self.final = config.policy
        self.rng = random.Random(config.seed)
        self.schools = plan_schools(config.pool, config.students, self.rng)
        self.counties = [county.code for county in counties_of(config.pool)]
        self.ids = IdentityFactory(self.counties, self.rng)
        self.elsewhere_pool = neighbour_pool(config.pool, {policy.pool for policy in config.policies})
        self.elsewhere_county = self.elsewhere_pool[:4] + "02"
        self.rates = {**DEFAULT_RATES, **config.rates}
        self._use(self.final)
        self.until = start_of_local_day(add_months(self.final.collection_end, 3) + 1)
        self.full_subsidy = sorted(c for c, share in self.final.subsidy.items() if share >= 1.0)
        self.partial_subsidy = sorted(c for c, share in self.final.subsidy.items() if 0.0 < share < 1.0)
        self.serial = 0
        self.truth = SeasonTruth(config.pool, [_year_rules(p) for p in (*config.history, self.final)])
        self.profile_counts: Counter[str] = Counter()
        self.continuity_counts: Counter[str] = Counter()
        self.bad_rows: Counter[tuple[str, str]] = Counter()
        self._owed: dict[frozenset[str], int] = {}
        type_names = list(TYPE_SHARES)
        self._type_cumulative = (type_names, list(TYPE_SHARES.values()))

    def _use(self, policy: Policy) -> None:
        """Plan the records of this policy's season (its coverage year, collection period, checkpoint)."""
        self.policy = policy
        self.year = policy.coverage_year
        self.collection_start = start_of_local_day(policy.collection_start)
        self.collection_end = policy.collection_end_at
        self.first_checkpoint = policy.first_checkpoint_passes_at

    # -- times ---------------------------------------------------------------------------------

    def _instant(self, start: int, end: int) -> int:
        """A whole second in [start, end), never on a whole minute (no event shares a tick's instant)."""
        second = start // 1000 + self.rng.randrange(max(1, (end - start) // 1000))
        if second % 60 == 0:
            second += 1
        return second * 1000

    def _registration_time(self) -> int:
        """Registration over the collection period, with the end-of-December rush."""
        start, end = self.collection_start, self.collection_end - 3 * HOUR_MS
        days = (end - start) // MS_PER_DAY
        if days < 60:
            return self._instant(start, end)
        roll = self.rng.random()
        if roll < 0.35:
            return self._instant(start, start + 30 * MS_PER_DAY)
        if roll < 0.57:
            return self._instant(start + 30 * MS_PER_DAY, end - 20 * MS_PER_DAY)
        if roll < 0.70:
            return self._instant(end - 20 * MS_PER_DAY, end - 10 * MS_PER_DAY)
        return self._instant(end - 10 * MS_PER_DAY, end)

    def _paid_after(self, registered: int) -> int:
        """Payment a little after registering (2 minutes to 2 days), still inside the collection period."""
        return self._instant(registered + 2 * MINUTE_MS, min(registered + 48 * HOUR_MS, self.collection_end - HOUR_MS))

    def _late_time(self) -> int:
        return self._instant(self.collection_end + 1, self.collection_end + 75 * MS_PER_DAY)

    def _before_first_checkpoint(self) -> int:
        return self._instant(self.first_checkpoint - 25 * MS_PER_DAY, self.first_checkpoint - 2 * MS_PER_DAY)

    # -- references ----------------------------------------------------------------------------

    def _ref(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.config.pool}-{self.serial:010d}"

    # -- records -------------------------------------------------------------------------------

    def _student(self, index: int) -> _Student:
        names, weights = self._type_cumulative
        school_type = self.rng.choices(names, weights)[0]
        school = self.rng.choice(self.schools[school_type])
        # Of the school's age at the first season: born before any record of the student.
        first_year = (self.config.history or (self.final,))[0].coverage_year
        number = self.ids.new(birth_date(self.rng, first_year, AGES[school_type]))
        key = person_key(number, self.secret)
        return _Student(
            number, key, random_name(self.rng), school, f"XJ{self.config.pool}-{index:09d}", StudentHistory(key)
        )

    def _enrol(self, student: _Student, at: int, enrolled: bool = True) -> None:
        student.history.roster.append((at, enrolled))
        school = student.school
        row = {
            "id_number": student.number, "name": student.name, "school_code": school.code, "school_name": school.name,
            "school_type": school.school_type, "school_region": school.region,
            "action": "ENROLLED" if enrolled else "LEFT", "occurred_at": _time_text(at, False),
            "student_ref": student.student_ref,
        }  # fmt: skip
        student.rows.append((at, "education", row))

    def _register(
        self,
        student: _Student,
        at: int,
        region: str,
        insurance_type: str = "RESIDENT",
        ref: str | None = None,
        active: bool = True,
    ) -> str:
        ref = ref or self._ref("CB")
        student.history.registrations.append(
            PlannedRegistration(at, ref, insurance_type, pool_of(region), active, self.year)
        )
        national_code = {"RESIDENT": "390", "EMPLOYEE": "310"}[insurance_type]
        row = {
            "id_number": student.number,
            "insurance_type": national_code if self.rng.random() < 0.5 else insurance_type,
            "region": region, "coverage_year": str(self.year), "action": "REGISTERED" if active else "CANCELLED",
            "occurred_at": _time_text(at, False), "enrollment_ref": ref,
        }  # fmt: skip
        student.rows.append((at, "insurance", row))
        return ref

    def _pay(
        self,
        student: _Student,
        at: int,
        fen: int,
        region: str,
        ref: str | None = None,
        paid: bool = True,
        repair: bool = False,
    ) -> str:
        ref = ref or self._ref("PJ")
        student.history.payments.append(PlannedPayment(at, ref, fen, pool_of(region), paid, self.year, repair))
        number = student.number
        legacy = legacy_form(number)
        if legacy and self.rng.random() < self.rates["legacy_id"]:
            number = legacy
        row = {
            "id_number": number, "name": student.name, "coverage_year": str(self.year), "amount": _yuan(fen),
            "region": region, "action": "PAID" if paid else "REFUNDED", "occurred_at": _time_text(at, True),
            "payment_ref": ref, "channel": self.rng.choice(("微信", "支付宝", "银行", "税务APP", "窗口")),
        }  # fmt: skip
        if repair:
            row["purpose"] = "修复缴费" if self.rng.random() < 0.5 else "REPAIR"
        student.rows.append((at, "tax", row))
        return ref

    def _certify(self, student: _Student, category: str, approval_region: str) -> None:
        at = self._instant(self.collection_start - 200 * MS_PER_DAY, self.collection_start - 20 * MS_PER_DAY)
        first, last = year_bounds(self.year)
        # Over several seasons a status is valid from the last one (the earlier ones were paid in full).
        valid_from = first if self.config.history else first - 365
        open_ended = self.rng.random() >= 0.5
        student.history.statuses.append(
            PlannedStatus(at, category, True, days_to_date(valid_from).year, None if open_ended else self.year)
        )
        row = {
            "id_number": student.number, "category": category, "approval_region": approval_region,
            "action": "CERTIFIED", "valid_from": format_date(valid_from),
            "valid_to": "" if open_ended else format_date(last),
            "occurred_at": _time_text(at, True), "status_ref": self._ref("KN"),
        }  # fmt: skip
        student.rows.append((at, "hardship", row))

    def _expected_fen(self, categories: list[str]) -> int:
        """What a student with these categories owes in the season being planned (the last one)."""
        key = frozenset(categories)
        owed = self._owed.get(key)
        if owed is None:
            owed = self._owed[key] = self.truth.rules[self.year].contribution.owed(categories)
        return owed

    # -- profiles ------------------------------------------------------------------------------

    def _join_time(self) -> int:
        """When a student joins the roster: shortly before the (first) season's collection period."""
        return self._instant(self.collection_start - 7 * MS_PER_DAY, self.first_checkpoint - 20 * MS_PER_DAY)

    def _plan_history(self, student: _Student, continuity: str) -> None:
        """The earlier seasons of a student: covered (registered, paid on time) or not, by profile."""
        history = self.config.history
        self._use(history[0])
        self._enrol(student, self._join_time())
        student.region = self.rng.choice(self.counties)
        seasons = len(history)
        covered, before = [False] * seasons, False
        if continuity == "continuous":
            # From the first season, from the one before it too, or (first enrolled later) from a later one.
            start = self.rng.choice((0, 0, -1, -1, self.rng.randrange(seasons)))
            covered, before = [index >= start for index in range(seasons)], start < 0
        elif continuity in ("lapsed", "repaired"):
            # Covered in the season before the first, some seasons since, but not the last: a lapse.
            covered, before = [self.rng.random() < 0.5 for _ in range(seasons - 1)] + [False], True
        if before:  # the year before the first season has no policy here: a resident registration counts
            self.year = history[0].coverage_year - 1
            self._register(
                student,
                self._instant(self.collection_start - 380 * MS_PER_DAY, self.collection_start - 300 * MS_PER_DAY),
                student.region,
            )
        for policy, held in zip(history, covered, strict=True):
            if held:
                self._use(policy)
                registered = self._registration_time()
                self._register(student, registered, student.region)
                self._pay(student, self._paid_after(registered), policy.contribution_fen, student.region)
        self._use(self.final)
        if continuity == "repaired":
            lapsed = seasons - max((index + 1 for index, held in enumerate(covered) if held), default=0)
            years = self.rng.randint(1, lapsed + 1)  # sometimes more than lapsed: never below the fixed months
            repair = self.final.contribution_fen * years + self.rng.choice((0, 0, self.final.contribution_fen // 2))
            self._pay(student, self._registration_time(), repair, student.region, repair=True)

    def _continuity(self) -> str:
        roll = self.rng.random()
        for continuity in CONTINUITY_PROFILES:
            roll -= self.rates.get(continuity, 0.0)
            if roll < 0:
                return continuity
        return "continuous"

    def _plan(self, student: _Student, profile: str) -> None:
        """Write the records of one profile and note the alerts it must raise (beyond roster timing)."""
        region = student.region or self.rng.choice(self.counties)
        full = self.policy.contribution_fen
        if not student.history.roster:
            self._enrol(student, self._join_time())
        known = student.history.known
        if profile in ("unenrolled", "left"):
            if profile == "left":
                self._enrol(
                    student, self._instant(self.first_checkpoint + MS_PER_DAY, self.collection_end), enrolled=False
                )
            return
        if profile == "unpaid":
            registered = self._registration_time()
            self._register(student, registered, region)
            if self.rng.random() < 0.3:
                self._pay(student, self._paid_after(registered), full // 4, region)
            return
        if profile == "duplicate_pool":
            registered = self._registration_time()
            self._register(student, registered, region)
            self._pay(student, self._paid_after(registered), full, region)
            self._register(student, self._registration_time(), self.elsewhere_county)
            known[("DUPLICATE_ENROLLMENT", self.year, "")] = "OPEN"
            return
        if profile == "duplicate_employee":
            registered = self._registration_time()
            self._register(student, registered, region)
            self._pay(student, self._paid_after(registered), full, region)
            self._register(student, self._registration_time(), region, insurance_type="EMPLOYEE")
            known[("DUPLICATE_ENROLLMENT", self.year, "")] = "OPEN"
            return
        if profile == "duplicate_cleaned":
            # A duplicate the insurance bureau cleans: the second registration is cancelled once both were
            # active (1 to 40 days after the later of the two), so the alert opens and then resolves.
            registered = self._registration_time()
            self._register(student, registered, region)
            self._pay(student, self._paid_after(registered), full, region)
            second = self._registration_time()
            other = self._register(student, second, self.elsewhere_county)
            both = max(registered, second)
            cancelled = self._instant(both + MS_PER_DAY, both + 40 * MS_PER_DAY)
            self._register(student, cancelled, self.elsewhere_county, ref=other, active=False)
            known[("DUPLICATE_ENROLLMENT", self.year, "")] = "RESOLVED"
            return
        if profile == "hardship_wrong_place":
            category = self.rng.choice(self.partial_subsidy + self.full_subsidy)
            self._certify(student, category, self.elsewhere_county)
            registered = self._registration_time()
            self._register(student, registered, region)
            owed = self._expected_fen([category])
            if owed:
                self._pay(student, self._paid_after(registered), owed, region)
            known[("HARDSHIP_WRONG_PLACE", self.year, "")] = "OPEN"
            return
        if profile == "hardship":
            category = self.rng.choice(self.partial_subsidy + self.full_subsidy)
            self._certify(student, category, region)
            registered = self._registration_time()
            self._register(student, registered, region)
            owed = self._expected_fen([category])
            if owed:
                self._pay(student, self._paid_after(registered), owed, region)
            return
        if profile in ("overpaid", "subsidised_charged"):
            owed = full
            if profile == "subsidised_charged":
                self._certify(student, self.rng.choice(self.full_subsidy), region)
                owed = 0
            registered = self._before_first_checkpoint()
            self._register(student, registered, region)
            first = self._pay(student, self._paid_after(registered), full, region)
            extra = first if owed == 0 else self._pay(student, self._paid_after(registered) + MINUTE_MS, full, region)
            refunded = self.rng.random() < 0.35
            if refunded:
                self._pay(
                    student,
                    self._instant(self.first_checkpoint, self.collection_end - HOUR_MS),
                    full,
                    region,
                    ref=extra,
                    paid=False,
                )
            known[("OVERPAID", self.year, self.config.pool)] = "RESOLVED" if refunded else "OPEN"
            return
        if profile == "paid_unregistered":
            self._pay(student, self._registration_time(), full, region)
            known[("PAID_UNREGISTERED", self.year, self.config.pool)] = "OPEN"
            return
        if profile == "late_payment":
            self._register(student, self._registration_time(), region)
            self._pay(student, self._late_time(), full, region)  # the truth finds its waiting period
            return
        # normal: registers and pays in the collection period
        registered = self._registration_time()
        self._register(student, registered, region)
        self._pay(student, self._paid_after(registered), full, region)

    # -- bad rows ------------------------------------------------------------------------------

    def _bad_row(self, source: str) -> tuple[str, dict[str, str]]:
        """A row for a person who does not exist, broken in exactly one way."""
        code = self.rng.choice(_BAD_ROW_CODES[source])
        number = self.ids.new(date(2010, 1, 1 + self.rng.randrange(28)))
        at = _time_text(self._registration_time(), source in ("tax", "hardship"))
        year, region = str(self.year), self.rng.choice(self.counties)
        rows = {
            "education": {"id_number": number, "school_code": "X1", "school_type": "PRIMARY", "school_region": region,
                          "action": "ENROLLED", "occurred_at": at, "student_ref": self._ref("XJ")},
            "insurance": {"id_number": number, "insurance_type": "RESIDENT", "region": region, "coverage_year": year,
                          "action": "REGISTERED", "occurred_at": at, "enrollment_ref": self._ref("CB")},
            "tax": {"id_number": number, "coverage_year": year, "amount": "380.00", "region": region, "action": "PAID",
                    "occurred_at": at, "payment_ref": self._ref("PJ")},
            "hardship": {"id_number": number, "category": "ORPHAN", "approval_region": region, "action": "CERTIFIED",
                         "valid_from": "2023-01-01", "occurred_at": at, "status_ref": self._ref("KN")},
        }  # fmt: skip
        row = rows[source]
        breakers: dict[str, Callable[[], None]] = {
            "BAD_CHECK_CHARACTER": lambda: row.update(id_number=number[:17] + ("0" if number[17] != "0" else "1")),
            "BAD_BIRTH_DATE": lambda: row.update(id_number=_with_check(number[:10] + "13" + number[12:17])),
            "UNKNOWN_ENUM": lambda: row.update(action="MAYBE"),
            "BAD_REGION": lambda: row.update({_REGION_FIELD[source]: "4502"}),
            "BAD_TIME": lambda: row.update(occurred_at="2023-09-31 10:00:00"),
            "MISSING_FIELD": lambda: row.update({next(k for k in row if k.endswith("_ref")): ""}),
            "BAD_YEAR": lambda: row.update(coverage_year="24"),
            "BAD_AMOUNT": lambda: row.update(amount="三百八十"),
            "NEGATIVE_AMOUNT": lambda: row.update(amount="-380.00"),
            "BAD_DATE": lambda: row.update(valid_from="2023/13/01"),
        }  # fmt: skip
        breakers[code]()
        return code, row

    # -- the whole season ----------------------------------------------------------------------

    def _profile(self) -> str:
        roll = self.rng.random()
        for profile in PROFILES:
            roll -= self.rates.get(profile, 0.0)
            if roll < 0:
                return profile if self._possible(profile) else "normal"
        return "normal"

    def _possible(self, profile: str) -> bool:
        """Hardship profiles need subsidy categories in the policy."""
        if profile == "subsidised_charged":
            return bool(self.full_subsidy)
        if profile in ("hardship", "hardship_wrong_place"):
            return bool(self.full_subsidy or self.partial_subsidy)
        return True

    def generate(self, progress: bool | None = None) -> dict[str, Any]:
        out = self.config.out
        out.mkdir(parents=True, exist_ok=True)
        files = {
            source: SourceFile(out, source, self.config.file_format, self.config.headers, self.rng)
            for source in SOURCES
        }
        redelivered, bad_rate = self.rates["redelivered"], self.rates["bad_rows"]
        with (
            (out / "expected_alerts.jsonl").open("wb") as truth_file,
            tqdm(
                total=self.config.students,
                unit=" students",
                desc="synth",
                disable=None if progress is None else not progress,
            ) as bar,
        ):
            for index in range(self.config.students):
                student = self._student(index)
                profile = self._profile()
                self.profile_counts[profile] += 1
                if self.config.history:
                    continuity = self._continuity()
                    self.continuity_counts[continuity] += 1
                    self._plan_history(student, continuity)
                self._plan(student, profile)
                for _, source, row in sorted(student.rows, key=lambda item: item[0]):
                    files[source].write(row, redeliver=self.rng.random() < redelivered)
                    if self.rng.random() < bad_rate:
                        code, bad = self._bad_row(source)
                        self.bad_rows[(source, code)] += 1
                        files[source].write(bad)
                for line in self.truth.lines(student.history):
                    truth_file.write(orjson.dumps(line) + b"\n")
                if index % 1000 == 999:
                    bar.update(1000)
            bar.update(self.config.students % 1000)
        for source_file in files.values():
            source_file.close()
        manifest = self._manifest(files)
        (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        policies = PolicyBook((*self.config.history, self.final), self.config.policies.history_years)
        (out / "policy.toml").write_text(policies.to_toml(), encoding="utf-8")
        return manifest

    def _manifest(self, files: dict[str, SourceFile]) -> dict[str, Any]:
        rejected = Counter(source for source, _ in self.bad_rows.elements())
        return {
            "pool": self.config.pool,
            "coverage_year": self.year,
            "years": [policy.coverage_year for policy in (*self.config.history, self.final)],
            "students": self.config.students,
            "seed": self.config.seed,
            "until": _time_text(self.until, True),
            "policy": "policy.toml",
            "files": {
                source: {
                    "path": f.path.name,
                    "rows": f.rows,
                    "accepted": f.rows - rejected[source],
                    "rejected": rejected[source],
                    "redelivered": f.redelivered,
                    "rejected_by_code": {code: n for (s, code), n in sorted(self.bad_rows.items()) if s == source},
                }
                for source, f in files.items()
            },
            "profiles": dict(sorted(self.profile_counts.items())),
            "continuity": dict(sorted(self.continuity_counts.items())),
            # Students on a roster at the end, by continuous covered years ending with the last season.
            "continuous_years": {str(years): n for years, n in sorted(self.truth.continuity.items())},
            "alerts": {
                kind: {status: n for (k, status), n in sorted(self.truth.counts.items()) if k == kind}
                for kind in sorted({k for k, _ in self.truth.counts})
            },
            "elsewhere_pool": self.elsewhere_pool,
            "first_checkpoint": format_date(self.policy.checkpoints[0]),
            "collection_end": days_to_date(self.policy.collection_end).isoformat(),
        }


def _with_check(first17: str) -> str:
    return first17 + check_character(first17)


def _year_rules(policy: Policy) -> YearRules:
    """A policy as the ground truth reads it: plain numbers, none of the rules' code."""
    rules = policy.continuity
    return YearRules(
        policy.coverage_year,
        policy.first_checkpoint_passes_at,
        policy.collection_end_at,
        Contribution(policy.contribution_fen, policy.subsidy),
        policy.waiting_period_months,
        None
        if rules is None
        else Continuity(
            rules.counted_from, rules.months_per_lapsed_year, rules.long_lapse_years, rules.long_lapse_min_months
        ),
    )
