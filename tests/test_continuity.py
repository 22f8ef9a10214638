"""The continuity rules (SPEC section 6, *Waiting period*): one scenario per clause, each failing when
its clause is dropped, with the shipped Liuzhou policies (national figures) and a Guiyang-like pool
whose figures are not the national ones (tests/policies/guiyang-example.toml).

Liuzhou (450200): 2024 380 yuan, no continuity rules; 2025 400, 2026 420, 2027 440 yuan, each
collected 1 Sep - 31 Dec of the year before; waiting period 3 months, 1 month per lapsed year
counted from 2025, at least 6 months after a lapse of 4 years or more. Guilin (450300) has no policy:
a resident registration there counts as covered.
"""

from __future__ import annotations

from pathlib import Path

from schemas.models import AlertRecord, LogEvent
from schemas.times import format_date
from streams.core.policy import load_policies
from tests.support import Season, at, key_of, payment, registration, roster, tick, transitions

GUIYANG = Path(__file__).parent / "policies" / "guiyang-example.toml"
LIUZHOU_FEN = {2024: 38000, 2025: 40000, 2026: 42000, 2027: 44000}


def covered(person: str, year: int, region: str = "450202", fen: int | None = None) -> list[LogEvent]:
    """Registered and paid in the collection period of ``year`` (registration E<year>, receipt P<year>)."""
    owed = fen if fen is not None else LIUZHOU_FEN.get(year, 40000)
    return [
        registration(person, f"{year - 1}-09-10T08:00", f"E{year}", region=region, year=year),
        payment(person, f"{year - 1}-09-11T08:00", f"P{year}", fen=owed, region=region, year=year),
    ]


def enrolls_2027(person: str, paid: str = "2026-10-11T08:00", fen: int = 44000) -> list[LogEvent]:
    return [
        registration(person, "2026-10-10T08:00", "E2027", year=2027),
        payment(person, paid, "P2027", fen=fen, year=2027),
    ]


def waiting(alerts: list[AlertRecord]) -> list[tuple[str, str, int | None, int | None]]:
    """(status, benefit_start, lapsed, repaired) of the WAITING_PERIOD records among ``alerts``."""
    return [
        (a.status, format_date(a.details.benefit_start) if a.details.benefit_start is not None else "",
         a.details.lapsed_years, a.details.repaired_years)
        for a in alerts if a.kind == "WAITING_PERIOD"
    ]  # fmt: skip


def guiyang() -> Season:
    return Season(load_policies(GUIYANG))


# -- lapsed years ------------------------------------------------------------------------------------


def test_a_lapse_of_one_year_opens_a_waiting_period_even_for_a_payment_on_time() -> None:
    season = Season()
    season.feed(*covered("ann", 2025))
    alerts = season.feed(*enrolls_2027("ann"))
    # 1 Jan 2027 + 3 months + 1 month for the lapsed 2026: the payment's own date (October) is earlier.
    assert waiting(alerts) == [("OPEN", "2027-05-01", 1, 0)]
    [opened] = [a for a in alerts if a.kind == "WAITING_PERIOD"]
    assert (opened.pool, opened.as_of, opened.severity) == ("450200", at("2026-10-11T08:00"), "INFO")
    assert opened.details.payment_refs == ("P2027",)


def test_a_continuously_covered_student_has_no_waiting_period() -> None:
    season = Season()
    season.feed(*covered("bob", 2025), *covered("bob", 2026))
    assert season.feed(*enrolls_2027("bob")) == []


def test_coverage_in_any_pool_ends_a_lapse() -> None:
    guilin = Season()  # 2026 covered by a resident registration in Guilin, which has no policy
    guilin.feed(*covered("cat", 2025), registration("cat", "2025-09-10T08:00", "G2026", region="450302", year=2026))
    assert guilin.feed(*enrolls_2027("cat")) == []
    employee = Season()  # 2026 covered by employee insurance
    employee.feed(*covered("cat", 2025))
    employee.feed(registration("cat", "2025-09-10T08:00", "W2026", insurance="EMPLOYEE", year=2026))
    assert employee.feed(*enrolls_2027("cat")) == []


def test_lapsed_years_count_back_to_the_last_covered_year() -> None:
    season = Season()
    season.feed(*covered("dan", 2024))  # then nothing in 2025 and 2026
    assert waiting(season.feed(*enrolls_2027("dan"))) == [("OPEN", "2027-06-01", 2, 0)]


def test_years_before_counted_from_do_not_count_but_a_covered_one_ends_the_count() -> None:
    # Covered in 2022 (Liuzhou has no 2022 policy: a resident registration counts), then 2023-2026
    # not: four uncovered years, of which only 2025 and 2026 count (counted_from = 2025).
    season = Season()
    season.feed(registration("eve", "2021-09-10T08:00", "E2022", year=2022))
    assert waiting(season.feed(*enrolls_2027("eve"))) == [("OPEN", "2027-06-01", 2, 0)]


def test_a_first_enrollment_is_no_lapse() -> None:
    season = Season()
    assert season.feed(*enrolls_2027("fay")) == []


def test_a_year_that_was_registered_but_not_paid_was_not_covered() -> None:
    season = Season()
    season.feed(*covered("gus", 2025), registration("gus", "2025-09-10T08:00", "E2026", year=2026))
    season.feed(payment("gus", "2025-09-11T08:00", "P2026", fen=21000, year=2026))  # half of 2026's 420 yuan
    assert waiting(season.feed(*enrolls_2027("gus"))) == [("OPEN", "2027-05-01", 1, 0)]
    repaired_only = Season()  # a repair payment for 2026 does not make 2026 covered either
    repaired_only.feed(*covered("gus", 2025), registration("gus", "2025-09-10T08:00", "E2026", year=2026))
    repaired_only.feed(payment("gus", "2025-09-11T08:00", "R2026", fen=42000, year=2026, purpose="REPAIR"))
    assert waiting(repaired_only.feed(*enrolls_2027("gus"))) == [("OPEN", "2027-05-01", 1, 0)]


# -- repaired years ----------------------------------------------------------------------------------


def test_repair_payments_shorten_the_waiting_period_by_whole_contributions_of_the_year() -> None:
    for repair_fen, expected in (
        (44000, ("OPEN", "2027-05-01", 2, 1)),  # one year's contribution: one month less
        (86000, ("OPEN", "2027-05-01", 2, 1)),  # not two: 860 yuan is under two of 2027's 440 (two of 2026's 420)
        (88000, ("OPEN", "2027-04-01", 2, 2)),  # two years repaired: the fixed 3 months only
        (132000, ("OPEN", "2027-04-01", 2, 3)),  # repairing more than lapsed never goes below the fixed months
    ):
        season = Season()
        season.feed(*covered("hal", 2024), *enrolls_2027("hal"))
        repaired = season.feed(payment("hal", "2026-10-12T08:00", "R1", fen=repair_fen, year=2027, purpose="REPAIR"))
        assert waiting(repaired) == [expected], repair_fen
        assert "OVERPAID" not in season.open_kinds("hal")  # a repair never counts toward an overpayment


def test_a_repair_payment_never_covers() -> None:
    season = Season()
    season.feed(roster("ivy", "2026-09-01T08:00"), registration("ivy", "2026-09-05T08:00", "E2027", year=2027))
    season.feed(payment("ivy", "2026-09-06T08:00", "R1", fen=44000, year=2027, purpose="REPAIR"))
    opened = season.feed(tick("2026-10-01T00:00"))
    assert ("UNPAID", 2027, 0) in [(a.kind, a.coverage_year, a.details.paid_fen) for a in opened]
    # The contribution after it is the covering payment: late, so a waiting period from its own date.
    alerts = season.feed(payment("ivy", "2027-01-15T08:00", "P2027", fen=44000, year=2027))
    assert ("UNPAID", "RESOLVED") in transitions(alerts)
    assert waiting(alerts) == [("OPEN", "2027-04-15", 0, 1)]  # repaired, but nothing lapsed to shorten


def test_a_repair_payment_without_a_registration_is_not_paid_unregistered() -> None:
    season = Season()
    season.feed(payment("jan", "2026-10-02T08:00", "R1", fen=44000, year=2027, purpose="REPAIR"))
    assert season.feed(tick("2026-10-20T00:00")) == []
    # A contribution made the day after, its grace days already past on the clock: at once.
    paid = season.feed(payment("jan", "2026-10-03T08:00", "P1", fen=44000, year=2027))
    assert [(a.kind, a.status, a.details.payment_refs) for a in paid] == [("PAID_UNREGISTERED", "OPEN", ("P1",))]


# -- months ------------------------------------------------------------------------------------------


def test_the_months_per_lapsed_year_come_from_the_policy() -> None:
    season = guiyang()  # 2 months per lapsed year
    season.feed(*covered("kim", 2025, region="520102"))
    alerts = season.feed(
        registration("kim", "2026-10-10T08:00", "E2027", region="520102", year=2027),
        payment("kim", "2026-10-11T08:00", "P2027", fen=40000, region="520102", year=2027),
    )
    assert waiting(alerts) == [("OPEN", "2027-06-01", 1, 0)]  # 3 + 2 x 1 months


def test_after_a_long_lapse_the_waiting_period_stays_at_its_floor_after_repair() -> None:
    def repaired_after(lapse_from: int) -> list[tuple[str, str, int | None, int | None]]:
        season = guiyang()  # long lapse: 3 years or more, at least 9 months
        season.feed(*covered("lee", lapse_from, region="520102", fen=40000))
        return waiting(
            season.feed(
                registration("lee", "2028-10-10T08:00", "E2029", region="520102", year=2029),
                payment("lee", "2028-10-11T08:00", "P2029", fen=40000, region="520102", year=2029),
                payment("lee", "2028-10-12T08:00", "R1", fen=120000, region="520102", year=2029, purpose="REPAIR"),
            )
        )

    # Covered in 2025, then 2026-2028 not: a long lapse, fully repaired, still 9 months.
    assert repaired_after(2025)[-1] == ("OPEN", "2029-10-01", 3, 3)
    # Covered in 2026, then 2027-2028 not: two lapsed years repaired leave the fixed 3 months.
    assert repaired_after(2026)[-1] == ("OPEN", "2029-04-01", 2, 3)


# -- the covering payment, when the alert opens, benefit_start ------------------------------------------


def test_the_covering_payment_is_the_contribution_that_completes_the_amount() -> None:
    season = Season()
    season.feed(
        registration("mia", "2026-10-10T08:00", "E2027", year=2027),
        payment("mia", "2026-10-11T08:00", "P1", fen=20000, year=2027),  # on time, not enough
    )
    alerts = season.feed(payment("mia", "2027-02-10T08:00", "P2", fen=24000, year=2027))  # completes it, late
    assert waiting(alerts) == [("OPEN", "2027-05-10", 0, 0)]  # from the late payment's date: no lapse
    [opened] = alerts
    assert opened.details.payment_refs == ("P2",)


def test_a_late_payment_after_a_lapse_starts_from_its_own_date() -> None:
    season = Season()
    season.feed(*covered("ned", 2025))
    assert waiting(season.feed(*enrolls_2027("ned", paid="2027-02-10T08:00"))) == [("OPEN", "2027-06-10", 1, 0)]


def test_a_year_without_continuity_rules_keeps_the_rule_of_2024() -> None:
    season = Season()  # 2024 has no [policy.continuity]: a lapse opens nothing, a late payment counts from its date
    season.feed(registration("oli", "2021-09-10T08:00", "E2022", year=2022))
    assert season.feed(*covered("oli", 2024)) == []
    alerts = season.feed(registration("pam", "2023-10-01T08:00", "E2024"), payment("pam", "2024-02-10T08:00", "P1"))
    assert waiting(alerts) == [("OPEN", "2024-05-10", None, None)]


# -- written again, resolved -------------------------------------------------------------------------


def test_the_alert_is_written_again_when_a_repair_arrives_or_is_refunded() -> None:
    season = Season()
    season.feed(*covered("pat", 2024))
    assert waiting(season.feed(*enrolls_2027("pat"))) == [("OPEN", "2027-06-01", 2, 0)]
    assert waiting(season.feed(payment("pat", "2026-10-20T08:00", "R1", fen=44000, year=2027, purpose="REPAIR"))) == [
        ("OPEN", "2027-05-01", 2, 1)
    ]
    refunded = season.feed(payment("pat", "2026-11-20T08:00", "R1", fen=44000, year=2027, action="REFUNDED"))
    assert waiting(refunded) == [("OPEN", "2027-06-01", 2, 0)]
    # Another change of its details (a second contribution: overpaid) does not write it again.
    assert transitions(season.feed(payment("pat", "2026-11-21T08:00", "P2", fen=44000, year=2027))) == [
        ("OVERPAID", "OPEN")
    ]


def test_history_arriving_late_writes_it_again_and_resolves_it_when_the_lapse_goes() -> None:
    season = Season()
    season.feed(*covered("que", 2024))
    assert waiting(season.feed(*enrolls_2027("que"))) == [("OPEN", "2027-06-01", 2, 0)]
    assert waiting(season.feed(*covered("que", 2025))) == [("OPEN", "2027-05-01", 1, 0)]
    assert waiting(season.feed(*covered("que", 2026))) == [("RESOLVED", "", None, None)]


def test_a_refund_never_resolves_it() -> None:
    season = Season()
    season.feed(*covered("rae", 2025), *enrolls_2027("rae"))
    assert season.feed(payment("rae", "2026-12-01T08:00", "P2027", fen=44000, year=2027, action="REFUNDED")) == []
    assert "WAITING_PERIOD" in season.open_kinds("rae")


def test_a_corrected_date_resolves_it_only_when_there_is_no_lapse() -> None:
    late, on_time = "2027-01-15T10:00", "2026-12-30T10:00"
    no_lapse = Season()
    no_lapse.feed(*enrolls_2027("sam", paid=late))
    corrected = payment("sam", on_time, "P2027", fen=44000, year=2027, recorded="2027-01-20T09:00")
    assert waiting(no_lapse.feed(corrected)) == [("RESOLVED", "", None, None)]
    lapse = Season()
    lapse.feed(*covered("tom", 2025), *enrolls_2027("tom", paid=late))
    corrected = payment("tom", on_time, "P2027", fen=44000, year=2027, recorded="2027-01-20T09:00")
    # Still a lapse: open, written again from 1 January instead of the mistyped date.
    assert waiting(lapse.feed(corrected)) == [("OPEN", "2027-05-01", 1, 0)]


def test_hardship_students_have_no_waiting_period_after_a_lapse_either() -> None:
    from tests.support import hardship

    season = Season()
    season.feed(*covered("uma", 2025), hardship("uma", "2026-06-01T08:00", "H1", category="MINIMUM_LIVING"))
    assert waiting(season.feed(*enrolls_2027("uma", fen=22000))) == []


def test_the_alert_identity_is_the_contracts() -> None:
    from streams.core.rules import alert_id

    season = Season()
    season.feed(*covered("vic", 2025))
    [opened] = [a for a in season.feed(*enrolls_2027("vic")) if a.kind == "WAITING_PERIOD"]
    assert opened.alert_id == alert_id("WAITING_PERIOD", key_of("vic"), 2027, "450200")
