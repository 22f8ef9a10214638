"""Known answers for the identities the contract fixes: ``person_key``, ``alert_id`` and ``event_id``.

The literals were computed outside this code base (``openssl dgst -sha256 -hmac`` and ``sha256sum`` over
the strings the contract describes), so these tests fail if any implementation drifts from the contract,
even where the implementation and the season generator's ground truth would still agree with each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

from connectors.identity import Secret, normalise, person_key
from enrollbridge.synth import truth
from schemas.codec import new_event
from schemas.models import PaymentChange
from schemas.times import parse_instant
from streams.core import rules
from streams.core.clock import make_tick

NUMBER = "11010519491231002X"  # the standard's own example number
SECRET = Secret(b"enrollbridge-test-secret")
# printf '11010519491231002X' | openssl dgst -sha256 -hmac 'enrollbridge-test-secret'
PERSON = "ebfabcabd4fcdbf2d9c150f8a1c6e7e0d377009501460419334749048ed136f8"


def test_person_key_is_the_hmac_of_the_normalised_number() -> None:
    assert person_key(NUMBER, SECRET) == PERSON
    # The legacy 15-digit form and a lower-case x join the same person.
    assert person_key(normalise("110105491231002"), SECRET) == PERSON
    assert person_key(normalise("11010519491231002x"), SECRET) == PERSON


def test_alert_id_is_the_sha256_of_kind_person_year_discriminator() -> None:
    # printf 'UNENROLLED|<PERSON>|2024|450200' | sha256sum
    unenrolled = "ea96b2cd24680fe77c5b16f9a8a654c796b908499f206d1d7385aebbb465259b"
    # printf 'DUPLICATE_ENROLLMENT|<PERSON>|2024|' | sha256sum
    duplicate = "5c97da1d967abaeb5cf85fd3339b02ef7f86db613fba757a6527d329b1cc5d82"
    for implementation in (rules.alert_id, truth.alert_id):
        assert implementation("UNENROLLED", PERSON, 2024, "450200") == unenrolled
        assert implementation("DUPLICATE_ENROLLMENT", PERSON, 2024, "") == duplicate


def test_event_id_is_the_sha256_of_the_canonical_line_without_it() -> None:
    # printf '{"type":"ClockTick","occurred_at":"2023-10-01T00:00:00.000+08:00"}' | sha256sum (first 32)
    assert make_tick(parse_instant("2023-10-01T00:00+08:00")).event_id == "ef1a2d7247c720bc7b08c351634cd18a"
    payment = new_event(
        PaymentChange, person_key=PERSON, occurred_at=parse_instant("2023-12-31T23:30:00+08:00"),
        masked_id="110105********002X", coverage_year=2024, amount_fen=38000, region="450202", action="PAID",
        payment_ref="P1",
    )  # fmt: skip
    # printf '{"type":"PaymentChange","person_key":"<PERSON>","occurred_at":"2023-12-31T23:30:00.000+08:00",
    #   "masked_id":"110105********002X","coverage_year":2024,"amount_fen":38000,"region":"450202",
    #   "action":"PAID","payment_ref":"P1"}' | sha256sum (first 32)
    assert payment.event_id == "8a6aa6b0d4eb9ebe19740f90a15a0ee0"


def test_the_ground_truth_imports_nothing_it_checks() -> None:
    source = Path(truth.__file__).read_text(encoding="utf-8")
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    ours = {name for name in imported if name and name.split(".")[0] in {"streams", "connectors", "infra", "audit"}}
    assert ours == set()
    assert {name for name in imported if name and name.startswith("schemas")} <= {"schemas.times"}
