"""Identity numbers (GB 11643-1999 and the documents of the same form) and their pseudonyms.

Raw numbers exist only inside connectors: they are validated and normalised here, turned into
``person_key`` (HMAC-SHA256 under ENROLLBRIDGE_SECRET, SPEC section 2) and masked for people.
Besides resident identity numbers, two documents share their 18-character form and check and join
like them: the residence permits of Hong Kong, Macao and Taiwan residents (area codes 810000,
820000, 830000) and the 2023 foreigners' permanent-residence ID card (first character ``9``; its
characters 7-14 are the birth date as on a resident number).
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from infra.errors import InputError
from schemas.regions import PROVINCE_PREFIXES

SECRET_VARIABLE = "ENROLLBRIDGE_SECRET"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_ZEROS = ord("0") * sum(_WEIGHTS)
# ASCII digits only: ``\d`` also matches Arabic-Indic and other digits, which are no identity number.
_SHAPE_18 = re.compile(r"[0-9]{17}[0-9X]")
_SHAPE_15 = re.compile(r"[0-9]{15}")
_PERMIT_AREAS = frozenset({"810000", "820000", "830000"})  # Hong Kong, Macao, Taiwan residents' permits
_PERMANENT_RESIDENCE = "9"  # first character of the 2023 foreigners' permanent-residence ID card
# Not followed by X either: in 7 + a number ending in X, the 18 digits from the 7 are not the number.
_ID_LIKE = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9Xx])")
# A run longer than one number (a reference made of a number and a serial, two cells run together):
# 18 characters of number shape with a digit before or after them.
_LONGER_RUN = re.compile(r"[0-9]{18}[0-9Xx]|[0-9]{17}[Xx][0-9]")
_WINDOWS_18 = re.compile(r"(?=([0-9]{17}[0-9Xx]))")


class IdentityNumberError(ValueError):
    """An identity number that is not valid; ``code`` is the dead-letter error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Secret:
    """The HMAC key shared by the agencies. Its repr never shows the value."""

    value: bytes = field(repr=False)

    @classmethod
    def from_environment(cls) -> Secret:
        text = os.environ.get(SECRET_VARIABLE, "")
        if not text:
            raise InputError(
                f"{SECRET_VARIABLE} is not set: it is the key shared by the agencies for person_key "
                "(set it in the environment; it is never logged)"
            )
        return cls(text.encode("utf-8"))

    def __repr__(self) -> str:
        return "Secret(***)"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits."""
    digits = first17.encode("ascii", "replace")
    if len(digits) == 17 and digits.isdigit():
        # On the character codes, in C: the weighted sum of the codes less that of 17 zeros.
        return _CHECK_CHARS[(sum(map(operator.mul, digits, _WEIGHTS)) - _ZEROS) % 11]
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalise(raw: str) -> str:
    """Validate an identity number and return its normalised 18-character form.

    Accepts 18 characters (lower-case x allowed) or a legacy 15-digit number, which is converted by
    inserting ``19`` before the 2-digit year and appending the computed check character. Only ASCII
    digits count: cells are NFKC-normalised before they get here, so full-width digits already are.
    """
    number = raw.strip().upper()
    # Only ever a resident number: no permit or card had 15 characters.
    legacy = len(number) == 15 and _SHAPE_15.fullmatch(number) is not None
    if legacy:
        number = number[:6] + "19" + number[6:]
        number += check_character(number)
    elif not _SHAPE_18.fullmatch(number):
        raise IdentityNumberError(
            "BAD_ID_FORMAT",
            "identity number must be 18 characters (17 digits and a digit or X) or 15 digits, "
            f"got {len(number)} characters",
        )
    other_document = not legacy and (number[0] == _PERMANENT_RESIDENCE or number[:6] in _PERMIT_AREAS)
    if not other_document and number[:2] not in PROVINCE_PREFIXES:
        raise IdentityNumberError("BAD_AREA_CODE", f"identity number area code {number[:2]}xxxx names no province")
    birth = number[6:14]
    try:
        born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
    except ValueError:
        raise IdentityNumberError("BAD_BIRTH_DATE", "identity number holds an impossible birth date") from None
    if born.year < 1900:
        raise IdentityNumberError("BAD_BIRTH_DATE", "identity number holds a birth date before 1900")
    if number[17] != check_character(number[:17]):
        raise IdentityNumberError(
            "BAD_CHECK_CHARACTER", "identity number check character does not match (ISO 7064 MOD 11-2)"
        )
    return number


def birth_date(number: str) -> date:
    """Birth date of a normalised number."""
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def person_key(number: str, secret: Secret) -> str:
    """``HMAC-SHA256(key=secret, msg=normalised number)`` as 64 lower-case hex characters."""
    keyed = _keyed(secret.value).copy()  # the key's inner and outer pads hashed once, not per number
    keyed.update(number.encode("ascii"))
    return keyed.hexdigest()


@lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def mask(text: str) -> str:
    """First 6 and last 4 characters kept, the rest ``*``; anything of 10 characters or fewer is all ``*``."""
    if len(text) <= 10:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def redact(text: str, *, only_valid: bool = True) -> str:
    """Mask identity numbers inside free text.

    By default only runs that are valid identity numbers are masked, so a reference that merely has
    15 digits in a row (a serial number) keeps its value. ``only_valid=False`` masks every run shaped
    like one: for bad records, where a number with a typo is still somebody's number.

    Inside a longer run of digits, any 18 characters that are a valid identity number born in
    1900-2099 are masked too, in both modes (a student reference made of the number and a serial), so
    that a number is never shown whole because digits were written next to it. Random digits hold one
    by chance (a province, such a date and the check character must all fit): about 1 in 13,000
    references of 20 random digits has its middle masked, the same way wherever it appears, so a
    refund still finds its payment.
    """
    if len(text) < 15:  # too short to hold one
        return text
    if only_valid:
        text = _ID_LIKE.sub(_mask_if_identity, text)
    else:
        text = _ID_LIKE.sub(lambda match: mask(match.group(0)), text)
    return _mask_inside_longer_runs(text, only_valid) if _LONGER_RUN.search(text) else text


def _mask_inside_longer_runs(text: str, only_valid: bool) -> str:
    hidden: set[int] = set()
    for window in _WINDOWS_18.finditer(text):
        start = window.start()
        candidate = window.group(1)
        if not "1900" <= candidate[6:10] <= "2099":
            continue  # the year is most of what tells a number from digits that happen to fit
        try:
            normalise(candidate)
        except IdentityNumberError as error:
            # In a bad record a number with a wrong check character is still somebody's number, as
            # it is when it stands alone (``only_valid=False``): its area and birth date are enough.
            if only_valid or error.code != "BAD_CHECK_CHARACTER":
                continue
        hidden.update(range(start + 6, start + 14))  # as ``mask`` does: the first 6 and last 4 stay
    if not hidden:
        return text
    return "".join("*" if position in hidden else character for position, character in enumerate(text))


def _mask_if_identity(match: re.Match[str]) -> str:
    candidate = match.group(0)
    try:
        normalise(candidate)
    except IdentityNumberError:
        return candidate
    return mask(candidate)
