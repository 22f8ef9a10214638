"""Person state (SPEC section 3, versions and re-delivery): the version rule per slot, business-time
history, the storage form (and the one before versions), and the bounds that keep a person's state
within one Kafka message whatever the input."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import new_event
from schemas.models import RegistrationChange, RosterChange, SourceEvent
from streams.core.engine import Engine, MemoryStore
from streams.core.policy import load_policies
from streams.core.state import (
    MAX_RECORDS,
    MAX_TEXT,
    MAX_VERSIONS,
    Change,
    PersonState,
    dump_state,
    load_state,
)
from streams.replay import replay
from tests.support import at, hardship, key_of, payment, registration, roster, tick

ONE_MIB = 1 << 20


def _state(*events: SourceEvent) -> PersonState:
    state = PersonState("450202********0011")
    for event in events:
        state.apply(event)
    return state


def test_a_registration_and_its_cancellation_both_stay_in_business_time() -> None:
    registered = registration("ann", "2023-09-05T08:00", "E1")
    cancelled = registration("ann", "2023-10-10T08:00", "E1", action="CANCELLED")
    for order in ((registered, cancelled), (cancelled, registered)):
        state = _state(*order)
        assert not state.registrations["E1"].active  # the current record: the cancellation
        assert state.at(at("2023-09-30T00:00")).registrations["E1"].active  # as of 30 Sep: registered
        assert "E1" not in state.at(at("2023-09-01T00:00")).registrations
        assert state.records == 2
    state = _state(cancelled)
    assert state.apply(registered) is Change.HISTORY  # it changes past figures, not the rules


def test_a_correction_overrides_the_version_it_corrects_and_a_backdated_one_too() -> None:
    original = payment("bob", "2024-01-05T10:00", "P1", fen=76000)
    same_time = payment("bob", "2024-01-05T10:00", "P1", recorded="2024-01-06T10:00")
    backdated = payment("bob", "2023-12-30T10:00", "P1", recorded="2024-01-07T10:00")
    for events in itertools.permutations((original, same_time, backdated)):
        state = _state(*events)
        assert state.payments["P1"].paid == _state(backdated).payments["P1"].paid
        assert state.records == 1  # the versions it overrode are gone: nothing grows with corrections
    assert _state(original).apply(original) is Change.NONE
    assert _state(backdated).apply(original) is Change.NONE


def _versions(draw: st.DrawFn) -> list[SourceEvent]:
    times = st.sampled_from(["2023-09-01T08:00", "2023-09-02T08:00", "2023-09-03T08:00"])
    recorded = st.one_of(st.none(), st.sampled_from(["2023-09-02T08:00", "2023-09-05T08:00"]))
    actions = st.sampled_from(["REGISTERED", "CANCELLED"])
    regions = st.sampled_from(["450202", "450302"])
    return draw(
        st.lists(
            st.builds(
                lambda t, r, a, g: registration("cy", t, "E1", region=g, action=a, recorded=r),
                times,
                recorded,
                actions,
                regions,
            ),
            min_size=1,
            max_size=6,
        )
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_slot_is_a_function_of_the_set_of_its_records(data: st.DataObject) -> None:
    events = data.draw(st.composite(_versions)())
    shuffled = data.draw(st.permutations(events + events[: data.draw(st.integers(0, len(events)))]))
    first, second = _state(*events), _state(*shuffled)
    assert dump_state(first) == dump_state(second)
    winner = max(events, key=lambda e: (e.version_time, e.event_id))
    assert first.registrations["E1"].event_id == winner.event_id


def test_the_state_survives_its_storage_form() -> None:
    state = _state(
        roster("dee", "2023-09-01T08:00", school_name="一小"),
        registration("dee", "2023-09-05T08:00", "E1"),
        registration("dee", "2023-10-05T08:00", "E1", action="CANCELLED"),
        payment("dee", "2023-09-06T08:00", "P1"),
        payment("dee", "2023-09-07T08:00", "P1", action="REFUNDED", fen=1000),
        hardship("dee", "2023-06-01T08:00", "H1"),
    )
    loaded = load_state(dump_state(state))
    assert loaded == state and dump_state(loaded) == dump_state(state)
    assert loaded.at(at("2023-09-30T00:00")).registrations["E1"].active


# What the worker's table held before versions (format 1), as that version of dump_state wrote it.
FORMAT_1 = (
    b'[1,"450202********0011",[["026ac1023fe877272b2b572df1094d70",1693526400000,true,"S1","ann-S1","PRIMARY",'
    b'"450202"]],[["6a5ad17d2390b2cfbb46d0bfdac8aadd",1694131200000,false,"E1","RESIDENT","450202",2024]],[["P1",'
    b'["96535c571f4ffedda6fb6efaa081ee00",1693958400000,38000,"450202",2024],["14a72b2aace2f37e132d1fc5017efca9",'
    b'1694044800000,1000,"450202",2024]]],[["002f2f4b883e99bb2bf9d7a3ef3f0d2d",1685577600000,true,"H1","ORPHAN",'
    b'"450202",19358,null]],["993a85192add3fdb37813c3a2af13a65"],[["UNENROLLED",2024,"450200","450200","450202",'
    b'"S1","PRIMARY","ann-S1"]]]'
)


def test_a_state_stored_before_versions_is_read_with_version_time_occurred_at() -> None:
    state = load_state(FORMAT_1)
    cancelled = registration("ann", "2023-09-08T08:00", "E1", action="CANCELLED")
    assert state.registrations["E1"].event_id == cancelled.event_id
    assert state.registrations["E1"].version_time == state.registrations["E1"].occurred_at == cancelled.occurred_at
    assert state.payments["P1"].net_fen == 37000 and state.payments["P1"].paid.purpose is None  # type: ignore[union-attr]
    assert state.roster[("S1", "ann-S1")].school_name is None
    assert state.open_alerts[("UNENROLLED", 2024, "450200")].school_code == "S1"
    assert state.records == 5
    # It goes on under the version rule: the cancellation delivered again changes nothing; it is written as format 3.
    assert state.apply(cancelled) is Change.NONE
    assert dump_state(state).startswith(b"[3,") and load_state(dump_state(state)) == state


# What the worker's table held before years of history (format 2), as that version of dump_state wrote it.
FORMAT_2 = (
    b'[2,"450202********0011",[["026ac1023fe877272b2b572df1094d70",1693526400000,1693526400000,true,"S1","ann-S1",'
    b'"PRIMARY","450202","\xe4\xb8\x80\xe5\xb0\x8f"]],[["52cda408784e4b0743a7a12611fcc023",1696464000000,1696464000000,'
    b'false,"E1","RESIDENT","450202",2024]],[["P1",["96535c571f4ffedda6fb6efaa081ee00",1693958400000,1693958400000,'
    b'38000,"450202",2024,null],null]],[],[[["E","E1"],[["993a85192add3fdb37813c3a2af13a65",1693872000000,'
    b'1693872000000,true,"E1","RESIDENT","450202",2024]]]],[["UNENROLLED",2024,"450200","450200","450202","S1",'
    b'"PRIMARY","ann-S1","\xe4\xb8\x80\xe5\xb0\x8f"]],0]'
)


def test_a_state_stored_before_years_of_history_is_read_with_nothing_forgotten() -> None:
    state = load_state(FORMAT_2)
    assert state.past is None and state.kept(1990)
    assert not state.registrations["E1"].active and state.at(at("2023-09-30T00:00")).registrations["E1"].active
    assert state.open_alerts[("UNENROLLED", 2024, "450200")].school_name == "一小"
    assert state.open_alerts[("UNENROLLED", 2024, "450200")].benefit_start is None
    assert state.records == 4
    again = dump_state(state)
    assert again.startswith(b"[3,") and again.endswith(b",0,null,[]]") and load_state(again) == state


# -- bounds ----------------------------------------------------------------------------------------

PROVINCE = "\n".join(
    f'[[policy]]\npool = "{pool}"\ncoverage_year = {year}\ncontribution = "380.00"\n'
    f'collection_start = "{year - 1}-09-01"\ncollection_end = "{year - 1}-12-31"\n'
    for pool in (f"45{city:02d}00" for city in range(1, 15))
    for year in range(2024, 2028)
)


def _long(prefix: str, length: int) -> str:
    return (prefix + "校" * length)[:length]


def _largest_person() -> list[SourceEvent]:
    """A person built to make the state as large as the bounds allow: every record at the text limit,
    on rosters in all 14 cities, two registrations (a duplicate, in the wrong place) in as many years
    as the records allow, so that most records also hold open alerts filed under a long school name."""
    third = MAX_TEXT // 3
    status = hardship(
        "max", "2020-01-01T08:00", _long("H", MAX_TEXT), approval_region="450102", valid_from="1900-01-01"
    )
    events: list[SourceEvent] = [status]
    for city in range(1, 15):
        events.append(
            new_event(
                RosterChange,
                person_key=key_of("max"),
                occurred_at=at("2023-09-01T08:00") + city,
                masked_id="450202********0011",
                school_code=_long(f"S{city}", third),
                school_name=_long("名", third),
                school_type="PRIMARY",
                school_region=f"45{city:02d}02",
                action="ENROLLED",
                student_ref=_long("X", third),
            )
        )
    for index in range(MAX_RECORDS - len(events)):
        events.append(
            new_event(
                RegistrationChange,
                person_key=key_of("max"),
                occurred_at=at("2023-09-05T08:00") + index,
                masked_id="450202********0011",
                insurance_type="RESIDENT",
                region="450202",
                coverage_year=2100 - (index // 2) % 111,  # every year an event may carry, two (or three) each
                action="REGISTERED",
                enrollment_ref=_long(f"E{index}-", MAX_TEXT),
            )
        )
    return events


def test_the_largest_state_the_bounds_allow_is_well_within_one_kafka_message(tmp_path: Path) -> None:
    (tmp_path / "province.toml").write_text(PROVINCE, encoding="utf-8")
    engine = Engine(load_policies(tmp_path / "province.toml"), MemoryStore())
    for event in _largest_person():
        engine.process(event)
    engine.process(tick("2027-01-01T00:00"))
    state = engine.store.get(key_of("max"))
    assert state is not None and state.records == MAX_RECORDS and state.overflow == 0
    assert len(state.open_alerts) > 270  # duplicates and wrong place in 111 years, unpaid in 14 cities x 4 years
    size = len(dump_state(state))
    assert size < ONE_MIB * 3 // 4, size


def test_what_does_not_fit_is_counted_and_reported() -> None:
    refused: list[SourceEvent] = []
    engine = Engine(load_policies(), MemoryStore(), on_overflow=refused.append)
    events = _largest_person()
    for event in events:
        engine.process(event)
    one_more = payment("max", "2023-09-10T08:00", "P-more")
    assert engine.process(one_more) == [] and refused == [one_more]  # a new slot when the person is full
    too_long = registration("max", "2023-09-10T08:00", "E" * (MAX_TEXT + 1))
    engine.process(too_long)
    assert refused == [one_more, too_long]
    # An existing slot still takes its current record; its oldest earlier version makes room.
    first = events[-1]
    assert isinstance(first, RegistrationChange)
    cancel = registration("max", "2023-12-01T08:00", first.enrollment_ref, year=first.coverage_year, action="CANCELLED")
    engine.process(cancel)
    state = engine.store.get(key_of("max"))
    assert state is not None and not state.registrations[first.enrollment_ref].active
    assert state.records == MAX_RECORDS and state.overflow == 3 and refused[-1] == cancel
    assert load_state(dump_state(state)).overflow == 3


def test_a_slot_keeps_at_most_its_latest_versions() -> None:
    # Each a later version with a later time: each earlier one stays in force until the next one's time.
    versions = [payment("eve", f"2023-09-{day:02d}T08:00", "P1") for day in range(1, 2 * MAX_VERSIONS + 1)]
    state = _state(*versions)
    assert state.records == MAX_VERSIONS and state.overflow == MAX_VERSIONS
    assert state.payments["P1"].paid is not None and state.payments["P1"].paid.event_id == versions[-1].event_id
    assert "P1" not in state.at(at("2023-09-05T00:00")).payments  # the oldest versions made room


def test_the_replay_says_how_many_events_did_not_fit(tmp_path: Path) -> None:
    from schemas.codec import JsonLinesWriter

    path = tmp_path / "events.jsonl"
    with JsonLinesWriter(path) as out:
        for event in [*_largest_person(), payment("max", "2023-09-10T08:00", "P-more")]:
            out.write(event)
    result = replay([path], load_policies(), lambda _: None, progress=False)
    assert result.overflow == 1
