"""Identity numbers (GB 11643-1999), the person_key contract (SPEC section 2), masking and redaction."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.identity import (
    IdentityNumberError,
    Secret,
    check_character,
    mask,
    normalise,
    person_key,
    redact,
)
from infra.errors import InputError

# The worked example of GB 11643-1999.
STANDARD_EXAMPLE = "11010519491231002X"


def test_check_character_of_the_standards_example() -> None:
    assert check_character(STANDARD_EXAMPLE[:17]) == "X"


def test_lower_case_x_is_normalised() -> None:
    assert normalise("11010519491231002x") == STANDARD_EXAMPLE


def test_fifteen_digit_numbers_become_their_eighteen_character_twin() -> None:
    assert normalise("110105491231002") == STANDARD_EXAMPLE


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("110105194912310021", "BAD_CHECK_CHARACTER"),
        ("110105194913310028", "BAD_BIRTH_DATE"),  # month 13
        ("110105194902300025", "BAD_BIRTH_DATE"),  # 30 February
        ("110105189912310027", "BAD_BIRTH_DATE"),  # before 1900
        ("990105194912310020", "BAD_AREA_CODE"),
        ("11010519491231002", "BAD_ID_FORMAT"),
        ("1101051949123100X2", "BAD_ID_FORMAT"),
        ("", "BAD_ID_FORMAT"),
    ],
)
def test_invalid_numbers_are_refused_with_their_code(number: str, code: str) -> None:
    if code == "BAD_BIRTH_DATE" and number[17] != check_character(number[:17]):
        number = number[:17] + check_character(number[:17])  # only the date is wrong
    with pytest.raises(IdentityNumberError) as refused:
        normalise(number)
    assert refused.value.code == code


def test_person_key_is_the_exact_hmac_of_the_spec() -> None:
    # Expected values from `printf %s 11010519491231002X | openssl dgst -sha256 -hmac <secret>`.
    assert person_key(STANDARD_EXAMPLE, Secret(b"enrollbridge-test-secret")) == (
        "ebfabcabd4fcdbf2d9c150f8a1c6e7e0d377009501460419334749048ed136f8"
    )
    assert person_key(STANDARD_EXAMPLE, Secret("医保-密钥".encode())) == (
        "c07f335113a8b7644512c75c062e02dd82d42d8acd6828152ae1ca88a13d5a18"
    )


@given(st.binary(min_size=1, max_size=40))
def test_person_key_matches_the_standard_library_for_any_secret(key: bytes) -> None:
    expected = hmac.new(key, STANDARD_EXAMPLE.encode(), hashlib.sha256).hexdigest()
    assert person_key(STANDARD_EXAMPLE, Secret(key)) == expected


def test_secret_comes_from_the_environment_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENROLLBRIDGE_SECRET", "s3cr3t-value")
    secret = Secret.from_environment()
    assert secret.value == b"s3cr3t-value"
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret)
    monkeypatch.delenv("ENROLLBRIDGE_SECRET")
    with pytest.raises(InputError, match="ENROLLBRIDGE_SECRET is not set"):
        Secret.from_environment()


def test_mask_keeps_first_six_and_last_four() -> None:
    assert mask(STANDARD_EXAMPLE) == "110105********002X"
    assert mask("12345") == "*****"


def test_redact_masks_identity_numbers_inside_references_only_when_valid() -> None:
    assert redact("G" + STANDARD_EXAMPLE) == "G110105********002X"
    assert redact("XJ450200000001259") == "XJ450200000001259"  # 15 digits, but no valid birth date
    assert redact("no 110105194912310021 here") == "no 110105194912310021 here"  # wrong check character
    assert redact("no 110105194912310021 here", only_valid=False) == "no 110105********0021 here"
