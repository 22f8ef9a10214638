"""``enrollbridge audit verify``: is the archive what was written, and does it reproduce its alerts?

1. Integrity: the manifest chain (sequence, previous hash, entry hash, the expected head if given),
   offsets continuing from segment to segment, and every file against its entry (present, size,
   SHA-256); files the manifest does not list. Every finding names the file and the entry.
2. Reproduction (only when nothing was tampered with): each partition's archived log is replayed with
   the archived policy and its alert records are compared, one by one, with the archived alerts of
   that partition. Identical copies of a record already seen are re-deliveries of at-least-once
   processing and are skipped (and counted). The first difference is reported with both records.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fastavro
from tqdm import tqdm

from audit.manifest import GENESIS, MANIFEST_NAME, Entry, ManifestError, file_digest, read_entries
from schemas.codec import read_record_container, to_json_line
from schemas.models import AlertRecord
from streams.core.policy import PolicyBook, load_policies
from streams.replay import ReplayResult, replay_partition

VERIFIED, TAMPERED, DIVERGED = 0, 3, 4


@dataclass
class Verdict:
    tampered: list[str] = field(default_factory=list)
    divergence: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the expected head tells
    events: int = 0
    alerts: int = 0
    redelivered: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return TAMPERED if self.tampered else DIVERGED if self.divergence else VERIFIED

    def render(self) -> str:
        if self.tampered:
            return "\n".join(["TAMPERED: the archive is not what was written", *(f"  {t}" for t in self.tampered)])
        rate = self.events / self.seconds if self.seconds else 0.0
        figures = (
            f"{self.events} log events replayed, {self.alerts} alert records compared "
            f"({self.redelivered} re-delivered copies skipped) in {self.seconds:.1f}s, {rate:,.0f} events/s"
        )
        if self.divergence:
            return "\n".join(["DIVERGED: the replay does not reproduce the archived alerts", *self.divergence, figures])
        return "\n".join(
            [
                "VERIFIED: the archive is intact and its replay matches the archived alerts",
                *self.notes,
                *self.lines,
                figures,
            ]
        )


def verify_archive(
    archive: Path, expected_head: str | None = None, policy_file: Path | None = None, progress: bool | None = None
) -> Verdict:
    verdict = Verdict()
    entries = check_integrity(archive, expected_head, verdict.tampered, verdict.notes)
    if verdict.tampered:
        return verdict
    policies = load_policies(policy_file or _archived_policy(archive, entries))
    started = time.monotonic()
    _compare_replay(archive, entries, policies, verdict, progress)
    verdict.seconds = time.monotonic() - started
    return verdict


def check_integrity(
    archive: Path, expected_head: str | None, findings: list[str], notes: list[str] | None = None
) -> list[Entry]:
    """The manifest's entries; every problem found is appended to ``findings``, and what the expected
    head tells about the archive (how many entries came after it) to ``notes``."""
    notes = [] if notes is None else notes
    if not (archive / MANIFEST_NAME).is_file():
        findings.append(f"{archive / MANIFEST_NAME}: missing")
        return []
    try:
        entries = [entry for _, entry in read_entries(archive)]
    except ManifestError as error:
        findings.append(str(error))
        return []
    previous_hash = GENESIS
    last_offset: dict[tuple[str, int | None], tuple[int, int]] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"manifest entry {number} ({entry.file})"
        if entry.sequence != number:
            findings.append(f"{where}: numbered {entry.sequence}: entries were removed, added or reordered")
        if entry.previous != previous_hash:
            findings.append(f"{where}: does not follow entry {number - 1} (previous hash differs)")
        if entry.content_hash() != entry.entry_hash:
            findings.append(f"{where}: altered (its hash does not match its content)")
        previous_hash = entry.entry_hash
        if entry.first_offset is not None and entry.last_offset is not None:
            stream = (entry.stream, entry.partition)
            if stream not in last_offset and entry.first_offset != 0:
                findings.append(
                    f"{where}: {entry.stream} partition {entry.partition} starts at offset {entry.first_offset}: "
                    f"offsets 0-{entry.first_offset - 1} are missing"
                )
            if stream in last_offset and entry.first_offset != last_offset[stream][1] + 1:
                before, offset = last_offset[stream]
                findings.append(
                    f"{where}: {entry.stream} partition {entry.partition} offsets {entry.first_offset}-"
                    f"{entry.last_offset} do not follow offset {offset} of entry {before}: a segment is missing "
                    "or out of order"
                )
            last_offset[stream] = (number, entry.last_offset)
        findings.extend(f"{where}: {problem}" for problem in _file_problems(archive, entry))
    if expected_head is not None:
        findings.extend(_head_problems(archive, entries, expected_head, notes))
    listed = {entry.file for entry in entries} | {MANIFEST_NAME}
    for path in sorted(p for p in archive.rglob("*") if p.is_file()):
        name = path.relative_to(archive).as_posix()
        if name not in listed:
            findings.append(f"{name}: not in the manifest (added)")
    return entries


def _head_problems(archive: Path, entries: list[Entry], expected_head: str, notes: list[str]) -> list[str]:
    """An earlier head is fine when the chain passes through it: later ``archive`` runs append to it."""
    head = entries[-1].entry_hash if entries else GENESIS
    if expected_head == head:
        notes.append(f"head {head}: the archive ends at it ({len(entries)} entries)")
        return []
    hashes = [GENESIS] + [entry.entry_hash for entry in entries]
    if expected_head not in hashes:
        return [
            f"{archive / MANIFEST_NAME}: its head is {head}, and no entry has the hash {expected_head}: entries "
            "were removed from its end, or the chain was rewritten"
        ]
    position = hashes.index(expected_head)
    after = len(entries) - position
    notes.append(
        f"head {expected_head} is entry {position} of {len(entries)}: the archive extends it, "
        f"{after} {'entry' if after == 1 else 'entries'} came after it (head now {head})"
    )
    return []


def _file_problems(archive: Path, entry: Entry) -> list[str]:
    path = (archive / entry.file).resolve()
    if archive.resolve() not in path.parents:
        return [f"file {entry.file} lies outside the archive"]
    if not path.is_file():
        return [f"file {entry.file} is missing (removed)"]
    size, sha = file_digest(path)
    if size < entry.size:
        return [f"file {entry.file} is truncated: {size} of {entry.size} bytes"]
    if sha != entry.sha256:
        return [f"file {entry.file} changed: SHA-256 {sha} instead of {entry.sha256}"]
    if entry.first_offset is None or entry.last_offset is None:
        return []
    # A forger who takes a record out of a segment must rehash it; its count still gives it away.
    span = entry.last_offset - entry.first_offset + 1
    if entry.records != span:
        return [
            f"holds {entry.records} records for offsets {entry.first_offset}-{entry.last_offset} ({span} offsets): "
            "records were removed or added inside the segment"
        ]
    held = _container_records(path)
    if isinstance(held, str):
        return [f"file {entry.file}: {held}"]
    if held != entry.records:
        return [
            f"file {entry.file} holds {held} records, its entry says {entry.records}: records were removed or added"
        ]
    return []


def _container_records(path: Path) -> int | str:
    """The number of records in an Avro container, from its block headers (nothing is decoded)."""
    with path.open("rb") as source:
        try:
            return sum(block.num_records for block in fastavro.block_reader(source))
        except (ValueError, EOFError, OSError) as error:
            return f"not a readable Avro container ({type(error).__name__})"


def _archived_policy(archive: Path, entries: list[Entry]) -> Path:
    policies = [entry for entry in entries if entry.stream == "policy"]
    if not policies:
        raise ManifestError(f"{archive / MANIFEST_NAME}: no policy entry; give --policy")
    return archive / policies[-1].file


class _Diverged(Exception):
    pass


def _compare_replay(
    archive: Path, entries: list[Entry], policies: PolicyBook, verdict: Verdict, progress: bool | None
) -> None:
    logs: dict[int, list[Entry]] = {}
    alerts: dict[int, list[Entry]] = {}
    for entry in entries:
        if entry.partition is not None and entry.stream in ("events", "alerts"):
            (logs if entry.stream == "events" else alerts).setdefault(entry.partition, []).append(entry)
    total = sum(entry.size for entries_ in logs.values() for entry in entries_)
    with tqdm(total=total, unit="B", unit_scale=True, desc="replaying archive", leave=False,
              disable=None if progress is None else not progress) as bar:  # fmt: skip
        for partition in sorted(set(logs) | set(alerts)):
            archived = _ArchivedAlerts(archive, alerts.get(partition, []))
            result = ReplayResult("log")

            def compare(
                replayed: AlertRecord, partition: int = partition, archived: _ArchivedAlerts = archived
            ) -> None:
                mine = to_json_line(replayed)
                found = archived.next()
                if found is None:
                    verdict.divergence += [
                        f"partition {partition}: the archived alerts end after offset {archived.last_offset} "
                        f"but the replay continues with alert_id {replayed.alert_id}",
                        f"  replayed: {mine.decode()}",
                    ]
                    raise _Diverged
                offset, theirs = found
                if theirs != mine:
                    verdict.divergence += [
                        f"partition {partition}, alerts offset {offset}: alert_id "
                        f"{AlertRecord.model_validate_json(theirs).alert_id}",
                        f"  archived: {theirs.decode()}",
                        f"  replayed: {mine.decode()}",
                    ]
                    raise _Diverged
                verdict.alerts += 1

            files = [archive / entry.file for entry in logs.get(partition, [])]
            try:
                replay_partition(
                    files, policies, compare, result=result, on_file=lambda p: bar.update(os.path.getsize(p))
                )
            except _Diverged:
                verdict.events += result.events
                return
            verdict.events += result.events
            surplus = archived.remaining()
            verdict.redelivered += archived.redelivered
            line = (
                f"partition {partition}: {result.events} events, {result.ticks} ticks, "
                f"{result.alerts} alert records match"
            )
            if surplus:
                verdict.divergence += [
                    f"partition {partition}: {surplus} archived alert records after offset {archived.last_offset} "
                    "have no event in the archived log to explain them",
                ]
                return
            verdict.lines.append(line)


class _ArchivedAlerts:
    """The archived alert records of one partition in offset order, re-delivered copies skipped."""

    def __init__(self, archive: Path, entries: list[Entry]) -> None:
        self._records = self._read(archive, entries)
        self._seen: set[bytes] = set()
        self.redelivered = 0
        self.last_offset: int | None = None

    @staticmethod
    def _read(archive: Path, entries: list[Entry]) -> Iterator[tuple[int, bytes]]:
        for entry in entries:
            with (archive / entry.file).open("rb") as source:
                for index, alert in enumerate(read_record_container(source, AlertRecord)):
                    yield (entry.first_offset or 0) + index, to_json_line(alert)

    def next(self) -> tuple[int, bytes] | None:
        for offset, line in self._records:
            self.last_offset = offset
            digest = hashlib.blake2b(line, digest_size=16).digest()
            if digest in self._seen:
                self.redelivered += 1
                continue
            self._seen.add(digest)
            return offset, line
        return None

    def remaining(self) -> int:
        """Records left after the replay ended that are not copies of ones already compared."""
        count = 0
        while self.next() is not None:
            count += 1
        return count
