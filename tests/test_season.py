"""Generated seasons end to end through the command line: ingest counts, ground truth, privacy,
and a replay that does not depend on how its inputs are named or encoded."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from connectors.identity import normalise
from enrollbridge.synth.season import SOURCES
from schemas.codec import encode_message, event_from_json, parsed_schema, write_event_container
from tests.cli import enrollbridge

LARGE = 100_000


class Season:
    """A generated season, ingested and replayed with the commands a user runs."""

    def __init__(self, folder: Path, students: int, seed: int, years: tuple[str, str] = ("--year", "2024")) -> None:
        self.folder = folder
        run = enrollbridge(
            "synth", "--pool", "450200", *years, "--students", students, "--seed", seed, "--out", folder,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        self.manifest: dict[str, Any] = orjson.loads((folder / "manifest.json").read_bytes())
        self.ingest_output: dict[str, str] = {}
        for source in SOURCES:
            run = enrollbridge(
                "ingest",
                source,
                folder / f"{source}.csv",
                "--out",
                self.events(source),
                "--dlq",
                folder / f"{source}.dlq.jsonl",
            )
            assert run.returncode == 0, run.stderr
            self.ingest_output[source] = run.stdout
        self.alerts = folder / "alerts.jsonl"
        self.coverage = folder / "coverage.jsonl"
        self.replay_output = self.replay(self.alerts, *(self.events(s) for s in SOURCES))

    def events(self, source: str) -> Path:
        return self.folder / f"{source}.events.jsonl"

    def replay(self, out: Path, *inputs: Path) -> str:
        run = enrollbridge(
            "replay", *inputs, "--policy", self.folder / "policy.toml", "--until", self.manifest["until"],
            "--out", out, "--coverage-out", self.coverage,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run.stdout


@pytest.fixture(scope="module")
def large_season(tmp_path_factory: pytest.TempPathFactory, secret_module: None) -> Season:
    return Season(tmp_path_factory.mktemp("large"), LARGE, seed=11)


@pytest.fixture(scope="module")
def small_season(tmp_path_factory: pytest.TempPathFactory, secret_module: None) -> Season:
    return Season(tmp_path_factory.mktemp("small"), 4_000, seed=5)


@pytest.fixture(scope="module")
def three_seasons(tmp_path_factory: pytest.TempPathFactory, secret_module: None) -> Season:
    return Season(tmp_path_factory.mktemp("seasons"), 3_000, seed=3, years=("--years", "2025..2027"))


@pytest.fixture(scope="module")
def secret_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENROLLBRIDGE_SECRET", "season-test-secret")
        yield


def _final_states(lines: bytes) -> dict[str, tuple[str, str]]:
    final: dict[str, tuple[str, str]] = {}
    for line in lines.splitlines():
        record = orjson.loads(line)
        final[record["alert_id"]] = (record["kind"], record["status"])
    return final


@pytest.mark.slow
def test_ingest_counts_are_what_the_season_expects(large_season: Season) -> None:
    for source in SOURCES:
        expected = large_season.manifest["files"][source]
        assert (
            f"read {expected['rows']}, accepted {expected['accepted']}, rejected {expected['rejected']}"
            in (large_season.ingest_output[source])
        )
        dead = [orjson.loads(line) for line in (large_season.folder / f"{source}.dlq.jsonl").read_bytes().splitlines()]
        codes: dict[str, int] = {}
        for letter in dead:
            codes[letter["error_code"]] = codes.get(letter["error_code"], 0) + 1
        assert codes == expected["rejected_by_code"]


@pytest.mark.slow
def test_replay_reproduces_the_ground_truth_exactly(large_season: Season) -> None:
    truth_lines = (large_season.folder / "expected_alerts.jsonl").read_bytes()
    truth = _final_states(truth_lines)
    replayed = _final_states(large_season.alerts.read_bytes())
    agreeing = {alert_id for alert_id, state in replayed.items() if truth.get(alert_id) == state}
    precision, recall = len(agreeing) / len(replayed), len(agreeing) / len(truth)
    assert (precision, recall) == (1.0, 1.0), {
        "unexpected": sorted({replayed[a] for a in replayed.keys() - agreeing})[:10],
        "missed": sorted({truth[a] for a in truth.keys() - agreeing})[:10],
    }
    assert len(truth) > LARGE / 10  # the season has plenty of anomalies to find
    starts = {
        (r := orjson.loads(line))["alert_id"]: r["benefit_start"]
        for line in truth_lines.splitlines()
        if b"WAITING_PERIOD" in line
    }
    for line in large_season.alerts.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["kind"] == "WAITING_PERIOD":
            assert record["details"]["benefit_start"] == starts[record["alert_id"]]


@pytest.mark.slow
def test_replay_prints_the_alert_summary(large_season: Season) -> None:
    truth = _final_states((large_season.folder / "expected_alerts.jsonl").read_bytes())
    for kind in ("UNENROLLED", "DUPLICATE_ENROLLMENT", "WAITING_PERIOD"):
        opened = sum(1 for k, status in truth.values() if k == kind and status == "OPEN")
        resolved = sum(1 for k, status in truth.values() if k == kind and status == "RESOLVED")
        assert re.search(rf"^{kind}\s+{opened}\s+{resolved}$", large_season.replay_output, re.MULTILINE)
    assert "open (resolved) by county" in large_season.replay_output and "450202" in large_season.replay_output


def test_replay_does_not_depend_on_file_order_or_names(small_season: Season) -> None:
    folder = small_season.folder
    renamed = []
    for index, source in enumerate(reversed(SOURCES)):
        copy = folder / f"zz-{index}-{source}.jsonl"
        copy.write_bytes(small_season.events(source).read_bytes())
        renamed.append(copy)
    small_season.replay(folder / "alerts-reordered.jsonl", *renamed)
    assert (folder / "alerts-reordered.jsonl").read_bytes() == small_season.alerts.read_bytes()


def test_avro_container_inputs_replay_to_the_same_bytes(small_season: Season) -> None:
    folder = small_season.folder
    containers = []
    for source in SOURCES:
        events = [event_from_json(orjson.loads(line)) for line in small_season.events(source).read_bytes().splitlines()]
        path = folder / f"{source}.avro"
        with path.open("wb") as out:
            write_event_container(out, events)
        containers.append(path)
    small_season.replay(folder / "alerts-avro.jsonl", *containers)
    assert (folder / "alerts-avro.jsonl").read_bytes() == small_season.alerts.read_bytes()


_NUMBER_RUN = re.compile(rb"(?<![0-9])[0-9]{15,17}[0-9Xx]?(?![0-9])")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def test_no_raw_identity_number_or_name_appears_in_any_output(small_season: Season) -> None:
    folder = small_season.folder
    numbers: set[str] = set()
    names: set[str] = set()
    for source in SOURCES:
        for line in (folder / f"{source}.csv").read_text(encoding="utf-8-sig").splitlines()[1:]:
            cells = line.split(",")
            numbers.add(cells[0])
            if source in ("education", "tax"):
                names.add(cells[1])
    numbers |= {normalise(n) for n in numbers if _valid(n)}
    names = {name for name in names if len(name) > 1}
    assert len(numbers) > 4_000 and len(names) > 100
    # Names are looked for within the runs of non-ASCII text (where any name lies): exact while no name
    # holds an ASCII character, and linear in the outputs' size, where ``name in text`` for each of
    # thousands of names took a minute and a half.
    assert not any(character.isascii() for name in names for character in name)
    lengths = sorted({len(name) for name in names})
    outputs = [p for p in folder.iterdir() if p.suffix in (".jsonl", ".json", ".toml", ".avro") and p.is_file()]
    assert {p.name for p in outputs} >= {"alerts.jsonl", "tax.events.jsonl", "tax.dlq.jsonl", "expected_alerts.jsonl"}
    for path in outputs:
        content = path.read_bytes()
        leaked = {m.decode() for m in _NUMBER_RUN.findall(content)} & numbers
        assert not leaked, f"{path.name} holds raw identity numbers"
        text = content.decode("utf-8", errors="replace")
        held = {
            run[start : start + size]
            for run in _NON_ASCII_RUN.findall(text)
            for size in lengths
            for start in range(len(run) - size + 1)
        }
        assert not held & names, f"{path.name} holds names"


def _valid(number: str) -> bool:
    try:
        normalise(number)
    except ValueError:
        return False
    return True


def test_seasons_after_2024_replay_to_their_ground_truth_waiting_periods_and_all(three_seasons: Season) -> None:
    manifest = three_seasons.manifest
    assert manifest["years"] == [2025, 2026, 2027] and manifest["coverage_year"] == 2027
    assert set(manifest["continuity"]) == {"continuous", "lapsed", "repaired", "first_time"}
    truth_lines = [
        orjson.loads(line) for line in (three_seasons.folder / "expected_alerts.jsonl").read_bytes().splitlines()
    ]
    truth = {line["alert_id"]: (line["kind"], line["status"]) for line in truth_lines}
    assert _final_states(three_seasons.alerts.read_bytes()) == truth
    assert {line["coverage_year"] for line in truth_lines} == {2025, 2026, 2027}
    # Every waiting period ends with the terms the ground truth computed: lapses and repairs among them.
    terms = {
        line["alert_id"]: (line["benefit_start"], line.get("lapsed_years"), line.get("repaired_years"))
        for line in truth_lines
        if line["kind"] == "WAITING_PERIOD" and line["status"] == "OPEN"
    }
    last: dict[str, Any] = {}
    for line in three_seasons.alerts.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["kind"] == "WAITING_PERIOD":
            last[record["alert_id"]] = record
    shown = {
        alert_id: (r["details"]["benefit_start"], r["details"].get("lapsed_years"), r["details"].get("repaired_years"))
        for alert_id, r in last.items()
        if r["status"] == "OPEN"
    }
    assert shown == terms
    assert sum(1 for _, lapsed, _ in terms.values() if lapsed) > 100
    assert sum(1 for _, _, repaired in terms.values() if repaired) > 50
    assert sum(1 for _, lapsed, _ in terms.values() if lapsed == 0) > 10  # late payers without a lapse


def test_continuous_years_of_the_coverage_records_agree_with_the_ground_truth(three_seasons: Season) -> None:
    final: dict[str, dict[str, Any]] = {}
    for line in three_seasons.coverage.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["coverage_year"] == 2027:
            final[record["person_key"]] = record
    counts: dict[str, int] = {}
    for record in final.values():
        if record["on_roster"]:
            years = str(record.get("continuous_years") or 0)
            counts[years] = counts.get(years, 0) + 1
    assert counts == three_seasons.manifest["continuous_years"]
    assert {"1", "2", "3", "4"} <= set(counts)


def test_the_policy_file_of_several_seasons_holds_each_of_them(three_seasons: Season) -> None:
    from streams.core.policy import load_policies

    book = load_policies(three_seasons.folder / "policy.toml")
    assert [(p.pool, p.coverage_year) for p in book] == [("450200", 2025), ("450200", 2026), ("450200", 2027)]
    assert book.history_years == 3 and all(p.continuity is not None for p in book)


def test_synth_says_which_season_has_no_policy_and_wants_one_way_to_name_the_years(
    tmp_path: Path, secret_env: str
) -> None:
    missing = enrollbridge("synth", "--pool", "450200", "--years", "2022..2027", "--students", 10, "--out", tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "enrollbridge: error: no policy for pool 450200 and coverage year 2022; pass --policy with one"
    )
    both = enrollbridge(
        "synth", "--pool", "450200", "--year", 2027, "--years", "2025..2027", "--students", 10, "--out", tmp_path
    )
    assert both.returncode == 2 and "give --year YEAR or --years FIRST..LAST, not both" in both.stderr
    backwards = enrollbridge("synth", "--pool", "450200", "--years", "2027..2025", "--students", 10, "--out", tmp_path)
    assert backwards.returncode == 2 and "expected FIRST..LAST" in backwards.stderr


def test_the_records_the_rules_build_without_validating_them_validate_unchanged(three_seasons: Season) -> None:
    """The rules build alert and coverage records without pydantic's validation (schemas.codec's
    ``trusted_record``): every one of a three-season replay must be what validating its fields gives,
    and its message body what fastavro writes."""
    from schemas.models import AlertRecord, CoverageRecord, Record
    from streams.core.policy import load_policies
    from streams.replay import replay

    built: list[Record] = []
    replay(
        [three_seasons.events(source) for source in SOURCES],
        load_policies(three_seasons.folder / "policy.toml"),
        built.append,
        progress=False,
        on_coverage=built.append,
    )
    kinds = {type(record) for record in built}
    assert kinds == {AlertRecord, CoverageRecord}
    assert any(isinstance(r, AlertRecord) and r.details.registrations for r in built)
    for record in built:
        assert type(record).model_validate(record.model_dump()) == record, record
        # The compiled Avro encoder (schemas/avro_binary.py) writes what fastavro writes.
        plain = io.BytesIO()
        fastavro.schemaless_writer(plain, parsed_schema(record.schema_name), record.model_dump())
        assert encode_message(record)[10:] == plain.getvalue(), record
