"""Counties and schools of a pooling area."""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.models import SchoolType
from schemas.regions import is_region_code

KNOWN_COUNTIES: dict[str, list[tuple[str, str]]] = {
    "450200": [
        ("450202", "城中区"), ("450203", "鱼峰区"), ("450204", "柳南区"), ("450205", "柳北区"), ("450206", "柳江区"),
        ("450222", "柳城县"), ("450223", "鹿寨县"), ("450224", "融安县"), ("450225", "融水苗族自治县"),
        ("450226", "三江侗族自治县"),
    ],
    "210400": [
        ("210402", "新抚区"), ("210403", "东洲区"), ("210404", "望花区"), ("210411", "顺城区"), ("210421", "抚顺县"),
        ("210422", "新宾满族自治县"), ("210423", "清原满族自治县"),
    ],
}  # fmt: skip

# Share of students by school type, and the age range of each type.
TYPE_SHARES: dict[str, float] = {
    SchoolType.KINDERGARTEN: 0.15,
    SchoolType.PRIMARY: 0.40,
    SchoolType.JUNIOR_SECONDARY: 0.18,
    SchoolType.SENIOR_SECONDARY: 0.10,
    SchoolType.SECONDARY_VOCATIONAL: 0.06,
    SchoolType.TECHNICAL: 0.02,
    SchoolType.SPECIAL_EDUCATION: 0.01,
    SchoolType.HIGHER_EDUCATION: 0.075,
    SchoolType.RESEARCH_INSTITUTE: 0.005,
}
AGES: dict[str, tuple[int, int]] = {
    SchoolType.KINDERGARTEN: (3, 5),
    SchoolType.PRIMARY: (6, 11),
    SchoolType.JUNIOR_SECONDARY: (12, 14),
    SchoolType.SENIOR_SECONDARY: (15, 17),
    SchoolType.SECONDARY_VOCATIONAL: (15, 18),
    SchoolType.TECHNICAL: (15, 19),
    SchoolType.SPECIAL_EDUCATION: (6, 17),
    SchoolType.HIGHER_EDUCATION: (18, 22),
    SchoolType.RESEARCH_INSTITUTE: (22, 28),
}
_TYPE_NAMES: dict[str, str] = {
    SchoolType.KINDERGARTEN: "幼儿园",
    SchoolType.PRIMARY: "小学",
    SchoolType.JUNIOR_SECONDARY: "初级中学",
    SchoolType.SENIOR_SECONDARY: "高级中学",
    SchoolType.SECONDARY_VOCATIONAL: "中等职业学校",
    SchoolType.TECHNICAL: "技工学校",
    SchoolType.SPECIAL_EDUCATION: "特殊教育学校",
    SchoolType.HIGHER_EDUCATION: "学院",
    SchoolType.RESEARCH_INSTITUTE: "研究所",
}
STUDENTS_PER_SCHOOL: dict[str, int] = {SchoolType.HIGHER_EDUCATION: 8000, SchoolType.RESEARCH_INSTITUTE: 400}
DEFAULT_STUDENTS_PER_SCHOOL = 600


@dataclass(frozen=True)
class County:
    code: str
    name: str


@dataclass(frozen=True)
class School:
    code: str
    name: str
    school_type: str
    region: str


def counties_of(pool: str) -> list[County]:
    """The counties of a pool: the real list for known cities, else seven made-up district codes."""
    known = KNOWN_COUNTIES.get(pool)
    if known:
        return [County(code, name) for code, name in known]
    return [County(f"{pool[:4]}{n:02d}", f"第{n}区") for n in range(2, 9)]


def neighbour_pool(pool: str, taken: set[str]) -> str:
    """Another city-level pool of the same province that is not in ``taken`` (the pools with a policy)."""
    for n in range(1, 100):
        candidate = f"{pool[:2]}{n:02d}00"
        if candidate != pool and candidate not in taken and is_region_code(candidate):
            return candidate
    raise ValueError(f"no other pool in province {pool[:2]}")


def plan_schools(pool: str, students: int, rng: random.Random) -> dict[str, list[School]]:
    """Schools of every type, spread over the pool's counties, sized to the number of students."""
    counties = counties_of(pool)
    schools: dict[str, list[School]] = {}
    serial = 0
    for school_type, share in TYPE_SHARES.items():
        size = STUDENTS_PER_SCHOOL.get(school_type, DEFAULT_STUDENTS_PER_SCHOOL)
        count = max(1, round(students * share / size))
        schools[school_type] = []
        for number in range(1, count + 1):
            county = counties[(serial * 7 + number) % len(counties)] if count > 1 else rng.choice(counties)
            serial += 1
            schools[school_type].append(
                School(
                    f"{county.code}{serial:04d}",
                    f"{county.name}第{number}{_TYPE_NAMES[school_type]}",
                    school_type,
                    county.code,
                )
            )
    return schools
