"""Audit archives: every kind of tampering is reported precisely, a faithful archive verifies and its
replay matches, a divergence is reported with both records (SPEC section 4)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from audit.archive import archive_log_offline, write_segment
from audit.manifest import MANIFEST_NAME, Entry, file_digest, head
from audit.verify import DIVERGED, TAMPERED, VERIFIED, verify_archive
from schemas.codec import container_metadata, read_event_container, read_record_container, write_event_container
from schemas.models import AlertRecord, ClockTick
from tests.cli import enrollbridge
from tests.live import Season

PARTITIONS = 3
Mutation = Callable[[int, list[AlertRecord]], list[AlertRecord]]


def build_archive(folder: Path, season: Season, mutate: Mutation | None = None, log_schema: Any = None) -> Path:
    """What ``enrollbridge archive`` writes after a fault-free live run, made without Kafka."""
    archive = folder / "archive"
    log = season.merged.stream(season.ticks, season.until)
    archive_log_offline(archive, log, season.folder / "policy.toml", PARTITIONS, 2, log_schema, mutate, progress=False)
    return archive


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Season:
    return Season(tmp_path_factory.mktemp("season"), 600, seed=11)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, season: Season) -> Path:
    return build_archive(tmp_path_factory.mktemp("pristine"), season)


@pytest.fixture
def archive(tmp_path: Path, pristine: Path) -> Path:
    copy = tmp_path / "archive"
    shutil.copytree(pristine, copy)
    return copy


def _entries(archive: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (archive / MANIFEST_NAME).read_bytes().splitlines()]


def _write_entries(archive: Path, entries: list[dict[str, object]], reseal: bool) -> None:
    """Rewrite the manifest; with ``reseal``, recompute the chain as a forger who knows the format would."""
    previous = "0" * 64
    lines = []
    for number, raw in enumerate(entries, start=1):
        entry = Entry(**raw)  # type: ignore[arg-type]
        if reseal:
            entry = Entry(**{**raw, "sequence": number, "previous": previous, "entry_hash": ""})  # type: ignore[arg-type]
            entry = Entry(**{**entry.__dict__, "entry_hash": entry.content_hash()})
            previous = entry.entry_hash
        lines.append(entry.line())
    (archive / MANIFEST_NAME).write_bytes(b"".join(lines))


def _segment(archive: Path, stream: str = "events", partition: int = 1, index: int = 0) -> tuple[int, Path]:
    """(entry number, path) of a segment."""
    matching = [
        (number, archive / str(e["file"]))
        for number, e in enumerate(_entries(archive), start=1)
        if e["stream"] == stream and e["partition"] == partition
    ]
    return matching[index]


def _remove_segment(archive: Path, index: int, reseal: bool) -> int:
    """Delete an events segment and its manifest entry (see ``_write_entries`` for ``reseal``); its entry number."""
    entries = _entries(archive)
    number, path = _segment(archive, index=index)
    path.unlink()
    _write_entries(archive, entries[: number - 1] + entries[number:], reseal=reseal)
    return number


def test_a_faithful_archive_verifies_and_its_replay_matches(pristine: Path) -> None:
    verdict = verify_archive(pristine, expected_head=head(pristine), progress=False)
    assert verdict.exit_code == VERIFIED, verdict.render()
    assert verdict.events > 0 and verdict.alerts > 0
    assert len(verdict.lines) == PARTITIONS
    assert "events/s" in verdict.render()


def test_the_command_reports_verified_with_exit_0(pristine: Path) -> None:
    run = enrollbridge("audit", "verify", pristine, "--head", head(pristine))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("VERIFIED")


def test_a_changed_byte_is_reported_with_its_file_and_entry(archive: Path) -> None:
    number, path = _segment(archive)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    run = enrollbridge("audit", "verify", archive)
    assert run.returncode == TAMPERED
    assert f"manifest entry {number} ({path.relative_to(archive).as_posix()}): file" in run.stdout
    assert "changed: SHA-256" in run.stdout


def test_a_truncated_file_is_reported(archive: Path) -> None:
    number, path = _segment(archive, "alerts", 2)
    path.write_bytes(path.read_bytes()[:-100])
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == TAMPERED
    assert any(f"manifest entry {number}" in t and "truncated" in t for t in verdict.tampered), verdict.tampered


def test_a_removed_file_is_reported(archive: Path) -> None:
    number, path = _segment(archive, index=1)
    path.unlink()
    verdict = verify_archive(archive, progress=False)
    assert verdict.tampered == [
        f"manifest entry {number} ({path.relative_to(archive).as_posix()}): file "
        f"{path.relative_to(archive).as_posix()} is missing (removed)"
    ]


def test_an_added_file_is_reported(archive: Path) -> None:
    _, path = _segment(archive)
    extra = path.with_name("000000000000-000000000001.avro")
    shutil.copyfile(path, extra)
    verdict = verify_archive(archive, progress=False)
    assert verdict.tampered == [f"{extra.relative_to(archive).as_posix()}: not in the manifest (added)"]


def test_a_removed_entry_breaks_the_chain(archive: Path) -> None:
    number = _remove_segment(archive, index=1, reseal=False)
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == TAMPERED
    assert any(f"manifest entry {number} " in t and "does not follow" in t for t in verdict.tampered)


def test_reordered_segments_are_reported(archive: Path) -> None:
    entries = _entries(archive)
    first, _ = _segment(archive, index=0)
    entries[first - 1], entries[first] = entries[first], entries[first - 1]
    _write_entries(archive, entries, reseal=False)
    verdict = verify_archive(archive, progress=False)
    assert any("does not follow" in t for t in verdict.tampered)
    # A forger who recomputes the chain is still caught by the offsets.
    _write_entries(archive, entries, reseal=True)
    verdict = verify_archive(archive, progress=False)
    assert any("do not follow offset" in t and "out of order" in t for t in verdict.tampered), verdict.tampered


def test_a_removed_segment_with_a_rewritten_chain_is_reported(archive: Path) -> None:
    _remove_segment(archive, index=0, reseal=True)
    verdict = verify_archive(archive, progress=False)
    assert any("events partition 1 starts at offset" in t and "missing" in t for t in verdict.tampered), (
        verdict.tampered
    )


def test_entries_cut_from_the_end_are_caught_by_the_head(archive: Path) -> None:
    recorded = head(archive)
    entries = _entries(archive)
    _, path = _segment(archive, "alerts", PARTITIONS - 1)
    path.unlink()
    _write_entries(archive, entries[:-1], reseal=False)
    verdict = verify_archive(archive, expected_head=recorded, progress=False)
    assert verdict.exit_code == TAMPERED
    assert any("entries were removed from its end" in t for t in verdict.tampered), verdict.tampered


def test_an_altered_entry_is_reported(archive: Path) -> None:
    entries = _entries(archive)
    entries[1]["records"] = int(entries[1]["records"]) + 1  # type: ignore[call-overload]
    _write_entries(archive, entries, reseal=False)
    verdict = verify_archive(archive, progress=False)
    assert any("manifest entry 2 " in t and "altered" in t for t in verdict.tampered), verdict.tampered


def test_a_wrong_alert_is_reported_with_both_records(tmp_path: Path, season: Season) -> None:
    def forge(partition: int, alerts: list[AlertRecord]) -> list[AlertRecord]:
        if partition == 1:
            alerts[5] = alerts[5].model_copy(update={"pool": "450299"})
        return alerts

    archive = build_archive(tmp_path, season, forge)
    run = enrollbridge("audit", "verify", archive)
    assert run.returncode == DIVERGED, run.stdout + run.stderr
    assert "partition 1, alerts offset 5: alert_id" in run.stdout
    assert '"pool":"450299"' in run.stdout.split("archived:")[1].split("\n")[0]
    assert '"pool":"450299"' not in run.stdout.split("replayed:")[1].split("\n")[0]


def test_missing_alerts_diverge(tmp_path: Path, season: Season) -> None:
    archive = build_archive(tmp_path, season, lambda p, alerts: alerts[:-3] if p == 0 else alerts)
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == DIVERGED
    assert "partition 0: the archived alerts end after offset" in verdict.divergence[0]


def test_redelivered_alert_records_are_not_a_divergence(tmp_path: Path, season: Season) -> None:
    # At-least-once: a restarted worker sends the records of its last batch again.
    archive = build_archive(tmp_path, season, lambda p, alerts: alerts[:20] + alerts[10:] if p == 2 else alerts)
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == VERIFIED, verdict.render()
    assert verdict.redelivered == 10


def test_the_head_of_an_earlier_archive_run_verifies_after_an_honest_append(archive: Path) -> None:
    earlier = head(archive)
    entries = _entries(archive)
    # The next run: a restarted worker sent the last alert records of partition 0 again.
    [last_alerts] = [e for e in entries if e["stream"] == "alerts" and e["partition"] == 0]
    with (archive / str(last_alerts["file"])).open("rb") as source:
        again = list(read_record_container(source, AlertRecord))[-3:]
    write_segment(archive, "alerts", "offline.alerts.v1", 0, int(last_alerts["last_offset"]) + 1, again)  # type: ignore[call-overload]
    run = enrollbridge("audit", "verify", archive, "--head", earlier)
    assert run.returncode == VERIFIED, run.stdout + run.stderr
    assert f"head {earlier} is entry {len(entries)} of {len(entries) + 1}: the archive extends it" in run.stdout
    assert "1 entry came after it" in run.stdout
    # An earlier run that ended in the middle of the chain: everything after it came later.
    middle = entries[2]
    verdict = verify_archive(archive, expected_head=str(middle["entry_hash"]), progress=False)
    assert verdict.exit_code == VERIFIED, verdict.render()
    assert f"{len(entries) + 1 - 3} entries came after it" in verdict.render()


def test_a_head_the_chain_does_not_pass_through_is_tampering(archive: Path) -> None:
    verdict = verify_archive(archive, expected_head="ab" * 32, progress=False)
    assert verdict.exit_code == TAMPERED
    assert any(f"no entry has the hash {'ab' * 32}" in t for t in verdict.tampered), verdict.tampered


def _redelivered_event(archive: Path) -> tuple[int, int]:
    """(entry number, index in its segment) of a log event whose identical copy came earlier in its
    partition: taking it out changes no alert, so only the segment's count can give it away."""
    seen: dict[int, set[str]] = {}
    for number, entry in enumerate(_entries(archive), start=1):
        if entry["stream"] != "events":
            continue
        ids = seen.setdefault(int(entry["partition"]), set())  # type: ignore[call-overload]
        with (archive / str(entry["file"])).open("rb") as source:
            for index, event in enumerate(read_event_container(source)):
                if not isinstance(event, ClockTick) and event.event_id in ids:
                    return number, index
                ids.add(event.event_id)
    raise AssertionError("the season has no re-delivered record")


@pytest.mark.parametrize("recount", [False, True])
def test_a_record_removed_inside_a_segment_with_a_rewritten_chain_is_reported(archive: Path, recount: bool) -> None:
    number, index = _redelivered_event(archive)
    entries = _entries(archive)
    entry = entries[number - 1]
    path = archive / str(entry["file"])
    with path.open("rb") as source:
        metadata = container_metadata(source)
        events = list(read_event_container(source))
    del events[index]
    with path.open("wb") as out:
        write_event_container(out, events, metadata)
    entry["size"], entry["sha256"] = file_digest(path)
    if recount:
        entry["records"] = len(events)
    _write_entries(archive, entries, reseal=True)
    verdict = verify_archive(archive, progress=False)
    assert verdict.exit_code == TAMPERED, verdict.render()
    first, last = entry["first_offset"], entry["last_offset"]
    expected = (
        f"manifest entry {number} ({entry['file']}): holds {len(events)} records for offsets {first}-{last}"
        if recount
        else f"manifest entry {number} ({entry['file']}): file {entry['file']} holds {len(events)} records, "
        f"its entry says {len(events) + 1}"
    )
    assert any(t.startswith(expected) for t in verdict.tampered), verdict.tampered


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the bad value, on its way to Avro
def test_a_segment_that_fails_to_be_written_leaves_no_file_and_no_entry(archive: Path) -> None:
    entries = _entries(archive)
    [last_alerts] = [e for e in entries if e["stream"] == "alerts" and e["partition"] == 0]
    with (archive / str(last_alerts["file"])).open("rb") as source:
        record = next(iter(read_record_container(source, AlertRecord)))
    unwritable = record.model_copy(update={"coverage_year": "not a year"})  # no validation: Avro refuses it
    before = sorted((archive / "alerts").rglob("*"))
    with pytest.raises(Exception):  # noqa: B017 -- whatever the writer raises, it must clean up
        write_segment(archive, "alerts", "offline.alerts.v1", 0, int(last_alerts["last_offset"]) + 1, [unwritable])  # type: ignore[call-overload]
    assert sorted((archive / "alerts").rglob("*")) == before, "no segment and no .partial file left behind"
    assert _entries(archive) == entries
