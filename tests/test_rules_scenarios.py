"""One scenario per alert kind (SPEC section 6), opening and resolving, with the edges the spec names.

Policy: the shipped Liuzhou 2024 (pool 450200, 380 yuan, collection 2023-09-01 to 2023-12-31,
first checkpoint 2023-09-30, grace 7 days, waiting period 3 months, ORPHAN fully subsidised,
MINIMUM_LIVING half). Guilin (450300) has no policy.
"""

from __future__ import annotations

from schemas.models import LogEvent
from schemas.times import format_date
from streams.core.rules import alert_id
from tests.support import Season, at, hardship, key_of, payment, registration, roster, tick, transitions

FIRST_CHECKPOINT_TICK = "2023-10-01T00:00"


def test_unenrolled_opens_only_from_the_first_checkpoint_and_resolves_on_registration() -> None:
    season = Season()
    assert season.feed(roster("ann", "2023-09-01T08:00"), tick("2023-09-30T12:00")) == []
    [opened] = season.feed(tick(FIRST_CHECKPOINT_TICK))
    assert (opened.kind, opened.status, opened.pool, opened.as_of) == (
        "UNENROLLED",
        "OPEN",
        "450200",
        at(FIRST_CHECKPOINT_TICK),
    )
    assert opened.alert_id == alert_id("UNENROLLED", key_of("ann"), 2024, "450200")
    assert opened.details.county == "450202" and opened.details.school_code == "S1"
    # A registration for 2024 resolves it; not paid yet, so the student becomes UNPAID at once.
    assert transitions(season.feed(registration("ann", "2023-10-05T10:00", "E1"))) == [
        ("UNENROLLED", "RESOLVED"),
        ("UNPAID", "OPEN"),
    ]


def test_a_tick_at_the_end_of_the_checkpoint_day_counts_as_passed() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"))
    assert transitions(season.feed(tick("2023-09-30T23:59:59.999"))) == [("UNENROLLED", "OPEN")]


def test_student_who_leaves_every_roster_in_the_pool_is_no_longer_unenrolled() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"), tick(FIRST_CHECKPOINT_TICK))
    assert transitions(season.feed(roster("ann", "2023-10-10T08:00", action="LEFT"))) == [("UNENROLLED", "RESOLVED")]
    assert season.open_kinds("ann") == {}


def test_student_on_two_rosters_in_the_pool_stays_unenrolled_until_leaving_both() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00", school="S1"), roster("ann", "2023-09-02T08:00", school="S2"))
    season.feed(tick(FIRST_CHECKPOINT_TICK))
    assert season.feed(roster("ann", "2023-10-10T08:00", school="S1", action="LEFT")) == []
    assert transitions(season.feed(roster("ann", "2023-10-11T08:00", school="S2", action="LEFT"))) == [
        ("UNENROLLED", "RESOLVED")
    ]


def test_roster_outside_any_policy_pool_raises_nothing() -> None:
    season = Season()
    assert season.feed(roster("ann", "2023-09-01T08:00", region="450302"), tick(FIRST_CHECKPOINT_TICK)) == []


def test_unpaid_resolves_when_the_full_contribution_is_paid_in_parts() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"), registration("ann", "2023-09-05T08:00", "E1"))
    [opened] = season.feed(tick(FIRST_CHECKPOINT_TICK))
    assert (opened.kind, opened.details.expected_fen, opened.details.paid_fen) == ("UNPAID", 38000, 0)
    assert season.feed(payment("ann", "2023-10-02T08:00", "P1", fen=20000)) == []
    assert transitions(season.feed(payment("ann", "2023-10-03T08:00", "P2", fen=18000))) == [("UNPAID", "RESOLVED")]


def test_unpaid_becomes_unenrolled_when_the_registration_is_cancelled() -> None:
    season = Season()
    season.feed(
        roster("ann", "2023-09-01T08:00"), registration("ann", "2023-09-05T08:00", "E1"), tick(FIRST_CHECKPOINT_TICK)
    )
    # Resolutions come before openings within one event.
    assert transitions(season.feed(registration("ann", "2023-10-05T08:00", "E1", action="CANCELLED"))) == [
        ("UNPAID", "RESOLVED"),
        ("UNENROLLED", "OPEN"),
    ]


def test_registration_in_a_pool_without_policy_counts_as_covered() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"), registration("ann", "2023-09-05T08:00", "E1", region="450302"))
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []


def test_employee_insurance_counts_as_covered() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"), registration("ann", "2023-09-05T08:00", "E1", insurance="EMPLOYEE"))
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []


def test_employee_insurance_covers_a_student_whose_resident_registration_is_unpaid() -> None:
    season = Season()
    season.feed(roster("ann", "2023-09-01T08:00"), registration("ann", "2023-09-05T08:00", "E1"))
    season.feed(registration("ann", "2023-09-06T08:00", "E2", insurance="EMPLOYEE"))
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []
    assert set(season.open_kinds("ann")) == {"DUPLICATE_ENROLLMENT"}


def test_duplicate_across_pools_opens_and_resolves_when_one_is_cancelled() -> None:
    season = Season()
    season.feed(registration("bob", "2023-09-05T08:00", "E1"))
    [opened] = season.feed(registration("bob", "2023-09-06T08:00", "E2", region="450302"))
    assert (opened.kind, opened.status) == ("DUPLICATE_ENROLLMENT", "OPEN")
    assert opened.alert_id == alert_id("DUPLICATE_ENROLLMENT", key_of("bob"), 2024, "")
    assert sorted(r.enrollment_ref for r in opened.details.registrations) == ["E1", "E2"]
    assert transitions(
        season.feed(registration("bob", "2023-09-07T08:00", "E2", region="450302", action="CANCELLED"))
    ) == [("DUPLICATE_ENROLLMENT", "RESOLVED")]


def test_duplicate_of_resident_and_employee_and_of_the_same_pool_twice() -> None:
    season = Season()
    season.feed(registration("bob", "2023-09-05T08:00", "E1"))
    assert transitions(season.feed(registration("bob", "2023-09-06T08:00", "E2", insurance="EMPLOYEE"))) == [
        ("DUPLICATE_ENROLLMENT", "OPEN")
    ]
    season.feed(registration("cat", "2023-09-05T08:00", "E3"))
    assert transitions(season.feed(registration("cat", "2023-09-06T08:00", "E4"))) == [("DUPLICATE_ENROLLMENT", "OPEN")]


def test_registrations_for_different_years_are_not_duplicates() -> None:
    season = Season()
    assert (
        season.feed(
            registration("bob", "2023-09-05T08:00", "E1"), registration("bob", "2022-09-05T08:00", "E0", year=2023)
        )
        == []
    )


def test_hardship_student_registered_outside_the_approval_pool() -> None:
    season = Season()
    season.feed(hardship("dan", "2023-06-01T08:00", "H1", category="MINIMUM_LIVING", approval_region="450302"))
    [opened] = season.feed(registration("dan", "2023-09-05T08:00", "E1"))
    assert (opened.kind, opened.details.approval_pools) == ("HARDSHIP_WRONG_PLACE", ("450300",))
    # Moving the registration to the approval pool resolves it.
    season.feed(registration("dan", "2023-09-10T08:00", "E2", region="450302"))
    assert transitions(season.feed(registration("dan", "2023-09-11T08:00", "E1", action="CANCELLED"))) == [
        ("DUPLICATE_ENROLLMENT", "RESOLVED"),
        ("HARDSHIP_WRONG_PLACE", "RESOLVED"),
    ]


def test_revoked_or_expired_hardship_status_is_not_wrong_place() -> None:
    season = Season()
    season.feed(hardship("dan", "2023-06-01T08:00", "H1", approval_region="450302"))
    season.feed(registration("dan", "2023-09-05T08:00", "E1"))
    assert transitions(
        season.feed(hardship("dan", "2023-09-06T08:00", "H1", approval_region="450302", action="REVOKED"))
    ) == [("HARDSHIP_WRONG_PLACE", "RESOLVED")]
    season.feed(hardship("eve", "2022-01-01T08:00", "H2", approval_region="450302", valid_to="2023-12-31"))
    assert season.feed(registration("eve", "2023-09-05T08:00", "E2")) == []


def test_overpaid_when_paid_twice_and_resolved_by_refund() -> None:
    season = Season()
    season.feed(registration("fay", "2023-09-05T08:00", "E1"), payment("fay", "2023-09-06T08:00", "P1"))
    [opened] = season.feed(payment("fay", "2023-09-07T08:00", "P2"))
    assert (opened.kind, opened.pool, opened.details.expected_fen, opened.details.paid_fen) == (
        "OVERPAID",
        "450200",
        38000,
        76000,
    )
    assert transitions(season.feed(payment("fay", "2023-09-20T08:00", "P2", action="REFUNDED"))) == [
        ("OVERPAID", "RESOLVED")
    ]


def test_fully_subsidised_student_charged_then_refunded() -> None:
    season = Season()
    season.feed(hardship("gus", "2023-06-01T08:00", "H1", category="ORPHAN"), roster("gus", "2023-09-01T08:00"))
    season.feed(registration("gus", "2023-09-05T08:00", "E1"))
    [opened] = season.feed(payment("gus", "2023-09-06T08:00", "P1"))
    assert (opened.kind, opened.details.expected_fen, opened.details.paid_fen) == ("OVERPAID", 0, 38000)
    assert transitions(season.feed(payment("gus", "2023-09-20T08:00", "P1", action="REFUNDED"))) == [
        ("OVERPAID", "RESOLVED")
    ]
    # Nothing to pay: registered is covered, at the checkpoint too.
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []


def test_half_subsidised_student_owes_half() -> None:
    season = Season()
    season.feed(hardship("hal", "2023-06-01T08:00", "H1", category="MINIMUM_LIVING"), roster("hal", "2023-09-01T08:00"))
    season.feed(registration("hal", "2023-09-05T08:00", "E1"), payment("hal", "2023-09-06T08:00", "P1", fen=19000))
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []


def test_payment_before_its_registration_within_the_grace_days_raises_nothing() -> None:
    season = Season()
    season.feed(payment("ivy", "2023-09-10T08:00", "P1"), registration("ivy", "2023-09-15T08:00", "E1"))
    assert season.feed(tick(FIRST_CHECKPOINT_TICK)) == []


def test_payment_without_registration_beyond_the_grace_days() -> None:
    season = Season()
    season.feed(payment("ivy", "2023-10-02T08:00", "P1"))
    assert season.feed(tick("2023-10-09T07:59:59.999")) == []  # 7 days minus a millisecond
    [opened] = season.feed(tick("2023-10-09T08:00"))
    assert (opened.kind, opened.pool, opened.details.payment_refs) == ("PAID_UNREGISTERED", "450200", ("P1",))
    assert transitions(season.feed(registration("ivy", "2023-10-12T08:00", "E1"))) == [
        ("PAID_UNREGISTERED", "RESOLVED")
    ]


def test_paid_unregistered_resolves_when_the_payment_is_refunded() -> None:
    season = Season()
    season.feed(payment("ivy", "2023-10-02T08:00", "P1"), tick("2023-10-20T00:00"))
    assert transitions(season.feed(payment("ivy", "2023-10-21T08:00", "P1", action="REFUNDED"))) == [
        ("PAID_UNREGISTERED", "RESOLVED")
    ]


def test_registration_in_another_pool_does_not_cover_a_payment() -> None:
    season = Season()
    season.feed(
        payment("ivy", "2023-10-02T08:00", "P1"), registration("ivy", "2023-10-03T08:00", "E1", region="450302")
    )
    assert transitions(season.feed(tick("2023-10-10T00:00"))) == [("PAID_UNREGISTERED", "OPEN")]


def test_payment_at_23_30_on_31_december_is_on_time_even_when_it_arrives_in_january() -> None:
    season = Season()
    season.feed(roster("jan", "2023-09-01T08:00"), registration("jan", "2023-09-05T08:00", "E1"))
    season.feed(tick(FIRST_CHECKPOINT_TICK), tick("2024-01-01T00:00"))
    assert transitions(season.feed(payment("jan", "2023-12-31T23:30", "P1"))) == [("UNPAID", "RESOLVED")]


def test_payment_at_00_30_on_1_january_is_late_with_a_waiting_period() -> None:
    season = Season()
    season.feed(
        roster("kim", "2023-09-01T08:00"), registration("kim", "2023-09-05T08:00", "E1"), tick(FIRST_CHECKPOINT_TICK)
    )
    alerts = season.feed(payment("kim", "2024-01-01T00:30", "P1"))
    assert transitions(alerts) == [("UNPAID", "RESOLVED"), ("WAITING_PERIOD", "OPEN")]
    waiting = alerts[1]
    assert format_date(waiting.details.benefit_start or 0) == "2024-04-01"
    assert (waiting.pool, waiting.severity, waiting.details.payment_refs) == ("450200", "INFO", ("P1",))
    # It records a fact: it never resolves, even when the payment is refunded later.
    assert [a.kind for a in season.feed(payment("kim", "2024-01-05T00:30", "P1", action="REFUNDED"))] == ["UNPAID"]
    assert "WAITING_PERIOD" in season.open_kinds("kim")


def test_waiting_period_date_is_clamped_to_the_end_of_a_short_month() -> None:
    season = Season()
    season.feed(registration("lee", "2023-09-05T08:00", "E1"))
    [waiting] = season.feed(payment("lee", "2024-11-30T10:00", "P1"))
    assert format_date(waiting.details.benefit_start or 0) == "2025-02-28"


def test_hardship_students_have_no_waiting_period() -> None:
    season = Season()
    season.feed(
        hardship("mia", "2023-06-01T08:00", "H1", category="MINIMUM_LIVING"),
        registration("mia", "2023-09-05T08:00", "E1"),
    )
    assert season.feed(payment("mia", "2024-01-10T08:00", "P1", fen=19000)) == []


def test_redelivered_records_change_nothing() -> None:
    season = Season()
    events: list[LogEvent] = [
        roster("ned", "2023-09-01T08:00"),
        registration("ned", "2023-09-05T08:00", "E1"),
        payment("ned", "2023-09-06T08:00", "P1"),
        payment("ned", "2023-09-07T08:00", "P1", action="REFUNDED"),
        registration("ned", "2023-09-08T08:00", "E1", action="CANCELLED"),
    ]
    season.feed(*events)
    before = list(season.alerts)
    for event in events:
        assert season.feed(event) == [], f"re-delivering {type(event).__name__} changed something"
    assert season.alerts == before


def test_a_correction_with_the_same_reference_and_action_replaces_the_record() -> None:
    season = Season()
    season.feed(registration("oli", "2023-09-05T08:00", "E1"), payment("oli", "2023-09-06T08:00", "P1"))
    # The tax bureau corrects the amount of P1 to twice the contribution: overpaid, not a second payment.
    assert transitions(season.feed(payment("oli", "2023-09-06T09:00", "P1", fen=76000))) == [("OVERPAID", "OPEN")]
    assert transitions(season.feed(payment("oli", "2023-09-06T10:00", "P1", fen=38000))) == [("OVERPAID", "RESOLVED")]
    # The record it corrected, delivered once more, does not undo the correction.
    assert season.feed(payment("oli", "2023-09-06T09:00", "P1", fen=76000)) == []


def test_equal_version_times_the_greater_event_id_wins_whatever_the_order() -> None:
    double, single = payment("oli", "2023-09-06T08:00", "P1", fen=76000), payment("oli", "2023-09-06T08:00", "P1")
    winner = max((double, single), key=lambda e: e.event_id)
    for first, second in ((double, single), (single, double)):
        season = Season()
        season.feed(registration("oli", "2023-09-05T08:00", "E1"), first, second, first, second)
        assert ("OVERPAID" in season.open_kinds("oli")) == (winner is double)


def test_a_backdated_correction_applies_and_removes_a_false_waiting_period() -> None:
    """The tax bureau corrects a mistyped date backwards: same payment_ref, earlier occurred_at, later recorded_at."""
    mistyped = payment("pam", "2024-01-05T10:00", "P1")
    corrected = payment("pam", "2023-12-30T10:00", "P1", recorded="2024-01-07T09:00")
    season = Season()
    season.feed(roster("pam", "2023-09-01T08:00"), registration("pam", "2023-09-05T08:00", "E1"))
    season.feed(tick(FIRST_CHECKPOINT_TICK))
    assert transitions(season.feed(mistyped)) == [("UNPAID", "RESOLVED"), ("WAITING_PERIOD", "OPEN")]
    assert transitions(season.feed(corrected)) == [("WAITING_PERIOD", "RESOLVED")]
    assert season.feed(mistyped) == []  # the record it corrected, delivered again, changes nothing
    # Delivered the other way round, the mistyped record loses and no waiting period ever opens.
    reverse = Season()
    reverse.feed(roster("pam", "2023-09-01T08:00"), registration("pam", "2023-09-05T08:00", "E1"))
    reverse.feed(tick(FIRST_CHECKPOINT_TICK))
    assert transitions(reverse.feed(corrected, mistyped)) == [("UNPAID", "RESOLVED")]


def test_a_record_that_loses_changes_nothing_whenever_it_arrives() -> None:
    season = Season()
    season.feed(roster("pat", "2023-09-01T08:00"), tick(FIRST_CHECKPOINT_TICK))
    season.feed(registration("pat", "2023-10-05T08:00", "E1", action="CANCELLED", recorded="2023-10-06T08:00"))
    # The registration it cancels arrives afterwards: an earlier version, so the student stays unenrolled.
    assert season.feed(registration("pat", "2023-10-02T08:00", "E1")) == []
    assert season.open_kinds("pat") == {"UNENROLLED": "450200"}


def test_a_duplicate_found_before_the_roster_entry_is_refiled_under_the_students_school() -> None:
    season = Season()
    season.feed(registration("que", "2023-09-05T08:00", "E1", region="450102"))  # Nanning: no policy here
    [found] = season.feed(registration("que", "2023-09-06T08:00", "E2", region="450205"))
    assert (found.kind, found.pool, found.details.county, found.details.school_code) == (
        "DUPLICATE_ENROLLMENT", "450100", "450102", None,
    )  # fmt: skip
    [refiled] = season.feed(
        roster("que", "2023-09-10T08:00", region="450203", school="S9", school_name="柳州市第九中学")
    )
    assert (refiled.alert_id, refiled.kind, refiled.status) == (found.alert_id, "DUPLICATE_ENROLLMENT", "OPEN")
    assert (refiled.pool, refiled.details.county, refiled.details.school_code, refiled.details.school_name) == (
        "450200", "450203", "S9", "柳州市第九中学",
    )  # fmt: skip
    # Other details change (a third registration joins the duplicate): not written again.
    assert season.feed(registration("que", "2023-09-12T08:00", "E3", region="450202")) == []
    # The resolution is filed where the alert is.
    season.feed(registration("que", "2023-09-20T08:00", "E2", region="450205", action="CANCELLED"))
    [resolved] = season.feed(registration("que", "2023-09-21T08:00", "E3", region="450202", action="CANCELLED"))
    assert (resolved.status, resolved.pool, resolved.details.county, resolved.details.school_name) == (
        "RESOLVED", "450200", "450203", "柳州市第九中学",
    )  # fmt: skip


def test_a_duplicate_cleaned_before_the_roster_entry_arrived_is_filed_again_under_the_school() -> None:
    # The insurance bureau delivers first: the duplicate opens and is cleaned, filed under the registration.
    season = Season()
    season.feed(registration("ria", "2023-10-05T08:00", "E1", region="450102"))
    [found] = season.feed(registration("ria", "2023-10-06T08:00", "E2", region="450205"))
    [cleaned] = season.feed(registration("ria", "2023-10-09T08:00", "E1", region="450102", action="CANCELLED"))
    assert (found.details.county, cleaned.status, cleaned.details.county) == ("450102", "RESOLVED", "450102")
    # The roster, delivered later, says the student was at a Liuzhou school all along: the alert is written
    # again where it belonged, at the business times it opened and ended, so a county's figures do not
    # depend on which agency delivered first.
    refiled = season.feed(roster("ria", "2023-09-01T08:00", region="450203", school="S9"))
    assert [(r.alert_id, r.status, r.pool, r.details.county, r.details.school_code, r.as_of) for r in refiled] == [
        (found.alert_id, "OPEN", "450200", "450203", "S9", found.as_of),
        (found.alert_id, "RESOLVED", "450200", "450203", "S9", cleaned.as_of),
    ]
    # Nothing more to say when another record of the same person arrives.
    assert season.feed(registration("ria", "2023-10-20T08:00", "E3", region="450203", action="CANCELLED")) == []


def test_an_open_alert_follows_a_student_who_transfers_school() -> None:
    season = Season()
    season.feed(roster("rae", "2023-09-01T08:00", school="S1", school_name="一小"), tick(FIRST_CHECKPOINT_TICK))
    transfer = [
        roster("rae", "2023-10-10T08:00", school="S1", action="LEFT", school_name="一小"),
        roster("rae", "2023-10-10T09:00", school="S2", region="450204", school_name="二小"),
    ]
    # Leaving S1 alone ends the student's roster in the pool; joining S2 opens the alert there again.
    assert transitions(season.feed(*transfer)) == [("UNENROLLED", "RESOLVED"), ("UNENROLLED", "OPEN")]
    # On two rosters of the pool, the latest entry is the one the alert is filed under.
    season = Season()
    season.feed(roster("sam", "2023-09-01T08:00", school="S1", school_name="一小"), tick(FIRST_CHECKPOINT_TICK))
    [moved] = season.feed(roster("sam", "2023-10-10T09:00", school="S2", region="450204", school_name="二小"))
    assert (moved.kind, moved.status, moved.pool, moved.details.county, moved.details.school_code) == (
        "UNENROLLED", "OPEN", "450200", "450204", "S2",
    )  # fmt: skip
    assert moved.details.school_name == "二小"


def test_alerts_opened_by_a_tick_name_the_sources_it_did_not_have() -> None:
    season = Season()
    season.feed(roster("tom", "2023-09-01T08:00"), roster("uma", "2023-09-01T08:00"))
    opened = season.feed(tick(FIRST_CHECKPOINT_TICK, incomplete=("tax", "insurance")))
    assert [(a.kind, a.details.incomplete_sources) for a in opened] == [("UNENROLLED", ("insurance", "tax"))] * 2
    season.feed(registration("tom", "2023-10-02T08:00", "E1"))  # UNPAID, opened by an event: nothing to say
    assert [a.details.incomplete_sources for a in season.alerts[2:]] == [(), ()]
    complete = Season()
    complete.feed(roster("tom", "2023-09-01T08:00"))
    assert [a.details.incomplete_sources for a in complete.feed(tick(FIRST_CHECKPOINT_TICK))] == [()]


def test_an_older_record_for_a_reference_does_not_replace_a_newer_one() -> None:
    season = Season()
    season.feed(registration("pat", "2023-09-05T08:00", "E1"), registration("pat", "2023-09-05T07:00", "E2"))
    assert season.feed(registration("pat", "2023-09-04T08:00", "E1", action="CANCELLED")) == []


def test_ticks_never_move_time_back() -> None:
    season = Season()
    season.feed(roster("quin", "2023-09-01T08:00"), tick(FIRST_CHECKPOINT_TICK))
    season.feed(roster("quin", "2023-10-02T08:00", action="LEFT"))
    assert season.feed(tick("2023-09-20T00:00"), tick(FIRST_CHECKPOINT_TICK)) == []


def test_a_change_of_the_payer_after_the_due_time_opens_paid_unregistered_at_once() -> None:
    season = Season()
    season.feed(payment("vin", "2023-10-02T08:00", "P1"), registration("vin", "2023-10-03T08:00", "E1"))
    assert season.feed(tick("2023-10-20T00:00")) == []
    # The registration is cancelled after the clock passed the grace days: the change itself opens it.
    [opened] = season.feed(registration("vin", "2023-10-21T08:00", "E1", action="CANCELLED"))
    assert (opened.kind, opened.status, opened.as_of) == ("PAID_UNREGISTERED", "OPEN", at("2023-10-21T08:00"))


def test_a_roster_student_is_checked_only_for_the_years_they_joined_the_roster_by() -> None:
    season = Season()  # Liuzhou 2024-2027; the student joins in September 2026
    season.feed(roster("xia", "2026-09-01T08:00"))
    opened = season.feed(tick("2026-10-01T00:00"))
    assert sorted((a.kind, a.coverage_year) for a in opened) == [("UNENROLLED", 2026), ("UNENROLLED", 2027)]
    earlier = Season()  # on the roster since 2023: every year with a policy
    earlier.feed(roster("yan", "2023-09-01T08:00"))
    assert sorted(a.coverage_year for a in earlier.feed(tick("2026-10-01T00:00"))) == [2024, 2025, 2026, 2027]
