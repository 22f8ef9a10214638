"""How fast ``audit verify`` checks and replays an archive of about 1,000,000 log events.

    python -m enrollbridge.bench.audit_verify [--students 340000] [--partitions 4] [--work DIR]

Generates a Liuzhou season, reads it through the connectors, writes the archive a fault-free live run
would leave (``archive_log_offline``), then times ``verify_archive`` against a baseline measured in
the same run: fastavro reading the same segment files and doing nothing else.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import fastavro

from audit.archive import archive_log_offline
from audit.verify import VERIFIED, verify_archive
from connectors.identity import Secret
from enrollbridge.demo import prepare_season
from schemas.times import parse_instant
from streams.core.policy import load_policies
from streams.replay import MergedLog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=340_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="enrollbridge-audit-bench-"))
    secret = Secret(b"benchmark-only-secret")
    policies = load_policies()
    manifest, event_files = prepare_season(work / "season", args.students, 1, secret, policies)
    until = parse_instant(manifest["until"])
    merged = MergedLog(event_files)
    archive = work / "archive"
    archive_log_offline(
        archive, merged.stream(merged.tick_times(policies, until), until), work / "season" / "policy.toml",
        args.partitions,
    )  # fmt: skip
    segments = sorted(archive.rglob("*.avro"))
    started = time.perf_counter()
    baseline_records = sum(1 for path in segments for _ in fastavro.reader(path.open("rb")))
    baseline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    verdict = verify_archive(archive)
    seconds = time.perf_counter() - started
    assert verdict.exit_code == VERIFIED, verdict.render()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mib = sum(p.stat().st_size for p in segments) / 2**20
    baseline_rate, verify_rate = baseline_records / baseline_seconds, verdict.events / seconds
    print(f"archive: {verdict.events:,} log events, {verdict.alerts:,} alerts, {len(segments)} segments, ", end="")
    print(f"{size_mib:.0f} MiB")
    print(f"{'measurement':<46}{'records/s':>12}{'seconds':>10}")
    print(f"{'baseline: fastavro reads every segment':<46}{baseline_rate:>12,.0f}{baseline_seconds:>10.1f}")
    print(f"{'audit verify: hash, replay, compare (events)':<46}{verify_rate:>12,.0f}{seconds:>10.1f}")
    print(f"ratio verify / baseline: {verify_rate / baseline_rate:.2f}")
    print(f"peak RSS {rss_mib:,.0f} MiB on {os.cpu_count()} cores; work directory {work}")


if __name__ == "__main__":
    main()
