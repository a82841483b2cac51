"""Start, watch and stop local processes; find free ports.

Used by ``lumenal up`` and by the test fixtures, so tests run the same
binaries the same way users do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: ManagedProcess | None = None) -> None:
    """Poll ``check`` until true; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what} exited with {proc.returncode()}; log tail:\n{proc.log_tail()}")
        time.sleep(0.1)
    tail = f"\nlog tail:\n{proc.log_tail()}" if proc else ""
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s{tail}")


@dataclass
class ManagedProcess:
    """One child process with its own log file and a readiness check."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    popen: subprocess.Popen | None = None
    restarts: int = 0
    ports: list[int] = field(default_factory=list)  # every port it listens on

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.popen = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}, cwd=self.cwd,
                                      start_new_session=True)
        logf.close()
        log.info("started", extra={"component": self.name, "pid": self.popen.pid})
        return self

    def wait_ready(self, timeout_s: float = 60) -> ManagedProcess:
        if self.ready is not None:
            wait_for(self.ready, timeout_s, self.name, self)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def terminate(self) -> None:
        """Ask the process group to stop (``stop`` waits for it)."""
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)

    def stop(self, timeout_s: float = 15) -> None:
        """Signal the process group, wait, then kill what is left."""
        if not self.alive():
            return
        assert self.popen is not None
        self.terminate()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("did not stop in time; killing", extra={"component": self.name})
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
