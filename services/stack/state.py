"""The running stack's state file (``$LUMENAL_HOME/run/stack.json``).

Written by the supervisor, read by ``lumenal status``/``down`` and by the CLI,
which takes connection settings (addresses, the local auth secret) from it
so ``lumenal ingest video.mp4`` just works against a local stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lumenal.core.config import lumenal_home


def state_path(home: Path | None = None) -> Path:
    return (home or lumenal_home()) / "run" / "stack.json"


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(home: Path | None = None) -> dict[str, Any] | None:
    """The state of a live stack, or None (a stale file from a crash counts as none)."""
    path = state_path(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(state.get("pid")) else None


def write(state: dict[str, Any], home: Path | None = None) -> None:
    """Atomically replace the state file; it holds the local secret, so 0600."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    tmp.replace(path)


def remove(home: Path | None = None) -> None:
    state_path(home).unlink(missing_ok=True)


def client_env(home: Path | None = None) -> dict[str, str]:
    """Connection variables of the live local stack ({} when none runs)."""
    state = read(home)
    return dict(state.get("env", {})) if state else {}
