"""Synthetic residents: valid, unique identity numbers and names (names stay in the source files)."""

from __future__ import annotations

import random
from datetime import date, timedelta

from connectors.identity import check_character

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐韦覃蓝莫"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红兰梅琳宇轩浩然子涵欣怡"
# Birthplaces outside the pool: county codes of other provinces (students often study away from home).
_ELSEWHERE = ["110105", "310104", "440106", "510107", "430102", "360102", "520102", "530102", "420106", "330106"]


class IdentityFactory:
    """Hands out identity numbers that are valid and never repeat within one season."""

    def __init__(self, home_counties: list[str], rng: random.Random) -> None:
        self.home = home_counties
        self.rng = rng
        self._next_sequence: dict[tuple[str, date], int] = {}

    def new(self, birth: date) -> str:
        while True:
            area = self.rng.choice(self.home) if self.rng.random() < 0.8 else self.rng.choice(_ELSEWHERE)
            sequence = self._next_sequence.get((area, birth), self.rng.randrange(0, 100))
            if sequence < 1000:
                self._next_sequence[(area, birth)] = sequence + self.rng.randrange(1, 4)
                first17 = f"{area}{birth:%Y%m%d}{sequence:03d}"
                return first17 + check_character(first17)
            birth += timedelta(days=1)


def legacy_form(number: str) -> str | None:
    """The 15-digit form of a number issued before 2000, when there is one."""
    if number[6:8] != "19":
        return None
    return number[:6] + number[8:17]


def random_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def birth_date(rng: random.Random, coverage_year: int, ages: tuple[int, int]) -> date:
    """A birth date giving an age within ``ages`` on 1 September before the coverage year."""
    age = rng.randint(*ages)
    start = date(coverage_year - 1 - age - 1, 9, 2)
    return start + timedelta(days=rng.randrange(365))
