"""Running the installed command as a user would: a real process, real exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def enrollbridge(
    *args: str | Path | int, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "enrollbridge", *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=timeout, check=False,
    )  # fmt: skip
