"""The two paths from an agency row to its event (``connectors/records.py``): the fast path gives
exactly the model path's event, and gives up (for the model path to say why) on exactly the rows
the model refuses -- on every row of generated seasons, bad rows included, and on rows of hostile
cells. ``trusted_event`` builds what ``new_event`` builds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.fields import RequiredText
from connectors.identity import Secret
from connectors.readers import open_rows
from connectors.records import RECORD_TYPES, EducationRecord, SourceRecord
from enrollbridge.synth.season import DEFAULT_RATES, SOURCES, SeasonConfig, SeasonGenerator
from schemas.codec import new_event, to_json_line, trusted_event, trusted_line
from schemas.models import EVENT_TYPES, ClockTick, Event, SourceEvent
from streams.core.policy import load_policies
from tests.files import GOOD_ROWS
from tests.test_hostile_input import cell

SECRET = Secret(b"record-paths-secret")


def _model_path(model: type[SourceRecord], values: dict[str, Any]) -> SourceEvent | None:
    try:
        return model.model_validate(values).event(SECRET)
    except ValidationError:
        return None


def _same_outcome(model: type[SourceRecord], values: dict[str, Any]) -> bool:
    """Whether both paths agree on a row; whether it became an event."""
    fast = model.fast_event(dict(values), SECRET)
    slow = _model_path(model, values)
    assert fast == slow, values
    # The line written without building the event is the event's canonical line.
    assert model.fast_line(dict(values), SECRET) == (None if fast is None else to_json_line(fast) + b"\n")
    if fast is None or slow is None:
        return False
    assert type(fast) is type(slow)
    assert to_json_line(fast) == to_json_line(slow)
    assert fast.model_fields_set == slow.model_fields_set
    return True


@pytest.mark.parametrize(("file_format", "headers"), [("csv", "chinese"), ("jsonl", "canonical")])
def test_every_row_of_a_generated_season(tmp_path: Path, file_format: str, headers: str) -> None:
    policies = load_policies()
    policy = policies.get("450200", 2024)
    assert policy is not None
    rates = {**DEFAULT_RATES, "bad_rows": 0.05}  # every kind of bad row the generator makes, many times
    config = SeasonConfig("450200", 2024, 600, 5, tmp_path, policy, policies, rates, file_format, headers)
    manifest = SeasonGenerator(config, SECRET).generate(progress=False)
    outcomes = []
    for source in SOURCES:
        model = RECORD_TYPES[source]
        row_file = open_rows(tmp_path / manifest["files"][source]["path"], model.header_names(), [])
        outcomes += [_same_outcome(model, dict(row.values)) for row in row_file.rows if row.problem is None]
    # The season holds bad rows of every kind the generator makes, and mostly good ones.
    assert outcomes.count(True) > 1500 and outcomes.count(False) > 50


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(GOOD_ROWS)), st.data())
def test_rows_with_hostile_cells(source: str, data: st.DataObject) -> None:
    model = RECORD_TYPES[source]
    values: dict[str, Any] = dict(GOOD_ROWS[source])
    for name in data.draw(st.sets(st.sampled_from(sorted(model.model_fields)), max_size=3)):
        if data.draw(st.booleans(), label=f"drop {name}"):
            values.pop(name, None)
        else:
            values[name] = data.draw(cell, label=name)
    _same_outcome(model, values)


def test_checks_across_fields_send_the_row_to_the_model() -> None:
    born_later = {**GOOD_ROWS["education"], "occurred_at": "2015-06-06 23:59:59"}
    reversed_validity = {**GOOD_ROWS["hardship"], "valid_to": "2022-12-31"}
    assert not _same_outcome(EducationRecord, born_later)
    assert not _same_outcome(RECORD_TYPES["hardship"], reversed_validity)
    assert _same_outcome(EducationRecord, {**born_later, "occurred_at": "2015-06-07 00:00:00"})


def test_a_field_with_more_than_its_parser_has_no_fast_path() -> None:
    from pydantic import Field

    from connectors.records import _plan

    class Constrained(EducationRecord):
        student_ref: RequiredText = Field(max_length=5)

    with pytest.raises(TypeError, match="student_ref"):
        _plan(Constrained)


def _sample(model: type[Event], rng: random.Random) -> dict[str, Any]:
    """Valid fields of a source event, the optional ones given or left out at random."""
    source = next(source for source, record in RECORD_TYPES.items() if record.event_type is model)
    event = RECORD_TYPES[source].model_validate(GOOD_ROWS[source]).event(SECRET)
    fields = {k: v for k, v in event.__dict__.items() if k != "event_id"}
    for name, info in model.model_fields.items():
        if not info.is_required() and rng.random() < 0.5:
            fields.pop(name, None)
    return fields


@pytest.mark.parametrize("seed", range(20))
def test_trusted_event_is_new_event(seed: int) -> None:
    rng = random.Random(seed)
    for name, model in EVENT_TYPES.items():
        if name == "ClockTick":
            fields: dict[str, Any] = {"occurred_at": rng.randrange(10**12, 2 * 10**12)}
            if rng.random() < 0.5:
                fields["incomplete"] = ("tax",)
        else:
            fields = _sample(model, rng)
        built = new_event(model, **fields)
        trusted = trusted_event(model, dict(fields))
        assert trusted == built and to_json_line(trusted) == to_json_line(built)
        assert trusted_line(model, dict(fields)) == to_json_line(built) + b"\n"  # ClockTick: through pydantic
        assert isinstance(trusted, model) and trusted.model_fields_set == built.model_fields_set


def test_trusted_event_refuses_unknown_and_missing_fields() -> None:
    with pytest.raises(TypeError, match="no field bogus"):
        trusted_event(ClockTick, {"occurred_at": 0, "bogus": 1})
    with pytest.raises(TypeError, match="no value for occurred_at"):
        trusted_event(ClockTick, {})


def test_a_field_parser_remembers_only_texts_it_accepted_and_only_so_many() -> None:
    from connectors.records import _MEMO_LIMIT, _memoised

    seen: list[object] = []

    def parse(cell: object) -> object:
        seen.append(cell)
        if cell == "bad":
            raise ValueError(cell)
        return str(cell).upper()

    parse_cell = _memoised(parse)
    assert [parse_cell("a"), parse_cell("a")] == ["A", "A"] and seen == ["a"]
    for _ in range(2):  # a failure raises every time, never from memory
        with pytest.raises(ValueError):
            parse_cell("bad")
    assert [parse_cell(True), parse_cell(1), parse_cell(1.0)] == ["TRUE", "1", "1.0"]  # equal keys, not cached
    assert seen.count("bad") == 2 and seen[-3:] == [True, 1, 1.0]
    for number in range(3 * _MEMO_LIMIT):  # a file whose cells never repeat
        assert parse_cell(f"x{number}") == f"X{number}"
    [memo] = [cell.cell_contents for cell in parse_cell.__closure__ or () if isinstance(cell.cell_contents, dict)]
    assert len(memo) == _MEMO_LIMIT
