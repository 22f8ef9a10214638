"""Benchmarks: ``enrollbridge bench`` (run.py) and the live baselines it starts (baselines.py)."""

# The rows ``enrollbridge bench --only`` can run (here, so the command line names them without
# importing the benchmark and its extra).
ROWS = ("replay", "ingest", "live", "scale-out", "sweep", "latency")
