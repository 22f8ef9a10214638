"""Policy as data (SPEC section 5): the TOML form, defaults, expected contribution and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import InputError
from schemas.times import format_date, format_instant
from streams.core.policy import PolicyBook, load_policies

SPEC_EXAMPLE = """
[[policy]]
pool = "450200"                # 柳州市
coverage_year = 2024
contribution = "380.00"        # yuan
collection_start = "2023-09-01"
collection_end = "2023-12-31"
# checkpoints = ["2023-09-30", "2023-10-31", "2023-11-30", "2023-12-31"]  # the default
waiting_period_months = 3
payment_grace_days = 7

[policy.subsidy]               # share of the contribution paid by the government
EXTREME_POVERTY = 1.0
ORPHAN = 1.0
MINIMUM_LIVING = 0.5
"""


CONTINUITY = """
[policy.continuity]
counted_from = 2025
months_per_lapsed_year = 1
long_lapse_years = 4
long_lapse_min_months = 6
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_spec_example_loads_with_its_defaults(tmp_path: Path) -> None:
    policy = load_policies(write(tmp_path, SPEC_EXAMPLE)).get("450200", 2024)
    assert policy is not None
    assert policy.contribution_fen == 38000
    assert [format_date(day) for day in policy.checkpoints] == ["2023-09-30", "2023-10-31", "2023-11-30", "2023-12-31"]
    assert format_instant(policy.collection_end_at) == "2023-12-31T23:59:59.999+08:00"
    assert format_instant(policy.checkpoint_tick_times()[0]) == "2023-10-01T00:00:00.000+08:00"
    assert (
        policy.expected_fen([]),
        policy.expected_fen(["MINIMUM_LIVING"]),
        policy.expected_fen(["MINIMUM_LIVING", "ORPHAN"]),
    ) == (
        38000,
        19000,
        0,
    )


def test_minimal_policy_takes_the_spec_defaults(tmp_path: Path) -> None:
    text = (
        '[[policy]]\npool = "210400"\ncoverage_year = 2024\ncontribution = "350"\n'
        "collection_start = 2023-10-15\ncollection_end = 2024-01-20\n"
    )
    policy = load_policies(write(tmp_path, text)).get("210400", 2024)
    assert policy is not None
    assert (policy.waiting_period_months, policy.payment_grace_days, policy.subsidy) == (3, 7, {})
    assert [format_date(d) for d in policy.checkpoints] == ["2023-10-31", "2023-11-30", "2023-12-31", "2024-01-20"]


def test_expected_contribution_rounds_half_up_to_the_fen(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace('"380.00"', '"0.05"').replace(
        "MINIMUM_LIVING = 0.5", "MINIMUM_LIVING = 0.5\nORPHAN_X = 0"
    )
    with pytest.raises(InputError, match=r"subsidy\.ORPHAN_X"):
        load_policies(write(tmp_path, text))
    policy = load_policies(write(tmp_path, SPEC_EXAMPLE.replace('"380.00"', '"0.05"'))).get("450200", 2024)
    assert policy is not None and policy.expected_fen(["MINIMUM_LIVING"]) == 3  # 2.5 fen -> 3


def test_to_toml_reads_back_the_same_policy(tmp_path: Path) -> None:
    for policy in load_policies():
        again = load_policies(write(tmp_path, policy.to_toml())).get(policy.pool, policy.coverage_year)
        assert again == policy


def test_shipped_policies_include_liuzhou_2024_and_a_liaoning_city() -> None:
    book = load_policies()
    liuzhou = book.get("450200", 2024)
    assert (
        liuzhou is not None
        and liuzhou.contribution_fen == 38000
        and format_date(liuzhou.collection_end) == "2023-12-31"
    )
    assert any(policy.pool.startswith("21") for policy in book)
    # Liuzhou 2025-2027 with the national continuity figures; 2024 without continuity rules.
    assert [p.coverage_year for p in book if p.pool == "450200"] == [2024, 2025, 2026, 2027]
    assert liuzhou.continuity is None
    for year in (2025, 2026, 2027):
        policy = book.get("450200", year)
        assert policy is not None and policy.continuity is not None
        assert (policy.continuity.counted_from, policy.continuity.months_per_lapsed_year) == (2025, 1)
        assert (policy.continuity.long_lapse_years, policy.continuity.long_lapse_min_months) == (4, 6)
    assert book.history_years == 3


def test_continuity_keys_left_out_take_the_national_figures(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace("coverage_year = 2024", "coverage_year = 2026").replace("2023-", "2025-")
    policy = load_policies(write(tmp_path, text + "\n[policy.continuity]\n")).get("450200", 2026)
    assert policy is not None and policy.continuity is not None
    assert policy.continuity.months(3, lapsed=1, repaired=0) == 4
    assert policy.continuity.months(3, lapsed=5, repaired=5) == 6  # the floor after a long lapse


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("x = 1", "no \\[\\[policy\\]\\] entries"),
        (SPEC_EXAMPLE.replace('pool = "450200"', 'pool = "450202"'), "pool must be a city-level"),
        (SPEC_EXAMPLE.replace('"2023-12-31"', '"2023-08-01"'), "collection_end is before collection_start"),
        (SPEC_EXAMPLE.replace("ORPHAN = 1.0", "ORPHAN = 1.5"), "subsidy.ORPHAN"),
        (SPEC_EXAMPLE.replace('"380.00"', '"380.001"'), "contribution"),
        (SPEC_EXAMPLE + SPEC_EXAMPLE, "two policies for pool 450200 and coverage year 2024"),
        (
            SPEC_EXAMPLE + CONTINUITY.replace("counted_from = 2025", "counted_from = 2028"),
            "continuity.counted_from 2028 is after the coverage year 2024",
        ),
        (
            SPEC_EXAMPLE + CONTINUITY.replace("months_per_lapsed_year", "months_per_lapse_year"),
            "continuity.months_per_lapse_year: Extra inputs are not permitted",
        ),
        (
            SPEC_EXAMPLE + CONTINUITY.replace("long_lapse_years = 4", "long_lapse_years = 0"),
            "continuity.long_lapse_years",
        ),
        ("history_years = -1\n" + SPEC_EXAMPLE, "history_years: a number of coverage years from 0 to 100, got -1"),
    ],
)
def test_malformed_policies_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_policies(write(tmp_path, text))


def test_first_checkpoints_passed_between() -> None:
    book = PolicyBook(load_policies())
    liuzhou = book.get("450200", 2024)
    assert liuzhou is not None
    at = liuzhou.first_checkpoint_passes_at
    assert liuzhou in book.first_checkpoints_passed_between(None, at)
    assert liuzhou not in book.first_checkpoints_passed_between(at, at + 1)
    assert liuzhou not in book.first_checkpoints_passed_between(None, at - 1)
