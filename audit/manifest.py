"""The archive manifest: one JSON line per archived file, chained by SHA-256 so that no entry can be
changed, removed, added or reordered without breaking the chain.

Each entry holds the file (relative to the archive), what it holds (``stream`` -- events, alerts or
policy -- with topic, partition, first and last offset, record count), its size and SHA-256, the
``previous`` entry's hash and its own ``entry_hash``: the SHA-256 of the entry's canonical JSON
(sorted keys, without ``entry_hash``). The last entry's hash is the archive's *head*: an auditor who
wrote it down can later detect even a truncated or wholly rewritten manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

MANIFEST_NAME = "manifest.jsonl"
GENESIS = "0" * 64
STREAMS = ("policy", "events", "alerts")


@dataclass(frozen=True)
class Entry:
    sequence: int
    file: str
    stream: str
    topic: str | None
    partition: int | None
    first_offset: int | None
    last_offset: int | None
    records: int
    size: int
    sha256: str
    previous: str
    entry_hash: str = ""

    def content_hash(self) -> str:
        body = {k: v for k, v in asdict(self).items() if k != "entry_hash"}
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def line(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS) + b"\n"


class ManifestError(ValueError):
    """A manifest line that cannot be read as an entry."""


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_entries(archive: Path) -> Iterator[tuple[int, Entry]]:
    """(line number, entry) of each manifest line; a malformed line raises ManifestError naming it."""
    path = archive / MANIFEST_NAME
    if not path.exists():
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                yield number, Entry(**orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError) as error:
                raise ManifestError(f"{path}:{number}: not a manifest entry ({error})") from None


def head(archive: Path) -> str:
    """The hash of the last entry (GENESIS for an empty archive)."""
    last = GENESIS
    for _, entry in read_entries(archive):
        last = entry.entry_hash
    return last


def append_entry(archive: Path, file: Path, stream: str, records: int, **where: Any) -> Entry:
    """Chain a new entry for ``file`` (already written inside ``archive``) onto the manifest."""
    entries = [entry for _, entry in read_entries(archive)]
    size, sha = file_digest(file)
    entry = Entry(
        sequence=len(entries) + 1,
        file=file.relative_to(archive).as_posix(),
        stream=stream,
        topic=where.get("topic"),
        partition=where.get("partition"),
        first_offset=where.get("first_offset"),
        last_offset=where.get("last_offset"),
        records=records,
        size=size,
        sha256=sha,
        previous=entries[-1].entry_hash if entries else GENESIS,
    )
    sealed = Entry(**{**asdict(entry), "entry_hash": entry.content_hash()})
    with (archive / MANIFEST_NAME).open("ab") as manifest:
        manifest.write(sealed.line())
    return sealed
