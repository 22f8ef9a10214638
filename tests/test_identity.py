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
        ("010105194912310020", "BAD_AREA_CODE"),
        ("830001200911300037", "BAD_AREA_CODE"),  # Taiwan residents' permits are 830000 exactly
        ("944840130704005", "BAD_AREA_CODE"),  # 15 digits are a legacy resident number, never a foreigner's card
        ("45٠٢٠٢٢٠١٥٠٦٠٧١٢٣٥", "BAD_ID_FORMAT"),  # Arabic-Indic digits: Python's \d and int() take them
        ("４５０２０２２０１５０６０７１２３５", "BAD_ID_FORMAT"),  # full-width: valid only after cell normalisation
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


def test_identity_numbers_inside_longer_runs_of_digits_are_masked() -> None:
    # A reference made of a number and a serial, or digits run into it: the number is never shown whole.
    assert redact(STANDARD_EXAMPLE + "01") == "110105********002X01"
    assert redact("7" + STANDARD_EXAMPLE) == "7110105********002X"
    assert redact("ref 20231106810000201001010019") == "ref 20231106810000********0019"
    assert redact(STANDARD_EXAMPLE + "01", only_valid=False) == "110105********002X01"
    assert redact("7" + STANDARD_EXAMPLE, only_valid=False) == "7110105********002X"  # the number's window
    # Digits that only have the shape stay: a wrong check character, or a year outside 1900-2099
    # (110105250012310028 is valid but for its year 2500; its check character worked out by hand).
    assert redact("11010519491231002101") == "11010519491231002101"
    assert redact("11010525001231002801") == "11010525001231002801"
    assert redact("110105250012310028") == "110105********0028"  # alone, it is a number's shape and check
    # In a bad record a wrong check character does not show the number, as it does not when it stands alone.
    assert redact("11010519491231002101", only_valid=False) == "110105********002101"
    assert redact("G11010519491231002101", only_valid=False) == "G110105********002101"


# Check characters of these worked out by hand with the recursive form of ISO 7064 MOD 11-2
# (p = (p + digit) * 2 mod 11 over the 17 digits; check value (12 - p) mod 11, 10 written X), not
# with the weighted sum the code uses.
OTHER_DOCUMENTS = [
    "810000201001010019",  # residence permit of a Hong Kong resident
    "82000020120315002X",  # residence permit of a Macao resident
    "830000200911300030",  # residence permit of a Taiwan resident
    "944840201307040058",  # 2023 foreigners' permanent-residence ID card (9, Guangdong 44, nationality 840)
]


@pytest.mark.parametrize("number", OTHER_DOCUMENTS)
def test_permits_and_the_permanent_residence_card_are_accepted_as_they_are(number: str) -> None:
    assert normalise(number) == number
    assert normalise(number.lower()) == number


@pytest.mark.parametrize("number", OTHER_DOCUMENTS)
def test_permits_and_the_permanent_residence_card_have_their_check_character_checked(number: str) -> None:
    wrong = number[:17] + ("1" if number[17] != "1" else "2")
    with pytest.raises(IdentityNumberError) as refused:
        normalise(wrong)
    assert refused.value.code == "BAD_CHECK_CHARACTER"


def test_other_documents_typed_into_free_text_are_masked() -> None:
    assert redact("permit 810000201001010019, card 944840201307040058") == (
        "permit 810000********0019, card 944840********0058"
    )
