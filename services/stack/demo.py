"""``lumenal up --demo``: load the SYNTHETIC demo into a running local stack.

Generates the synthetic capsule-like video once (under ``$LUMENAL_HOME/demo``),
creates demo accounts, and ingests the video with its ground truth, using the
same commands a user would run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO_PASSWORD = "lumenal-demo"
DEMO_USERS = (("ana", "annotator"), ("ben", "annotator"), ("cleo", "annotator"), ("rita", "reviewer"))


def demo_env() -> dict[str, str]:
    """Settings the services need for the demo's class set (before they start)."""
    from lumenal.demo.synthetic import CLASSES

    return {"LUMENAL_LABELS_CLASS_NAMES": ",".join(CLASSES)}


def _lumenal(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lumenal.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"lumenal {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def load_demo(home: Path, env: dict[str, str]) -> None:
    from lumenal.demo.synthetic import GROUND_TRUTH_NAME, TITLE, VIDEO_NAME

    demo = home / "demo"
    if not (demo / GROUND_TRUTH_NAME).exists():
        print(f"generating the {TITLE} ...", flush=True)
        _lumenal(env, "demo-video", str(demo))
    existing = _lumenal(env, "users", "list").stdout.split()
    for name, role in DEMO_USERS:
        if name not in existing:
            _lumenal(env, "users", "add", name, "--role", role, "--password", DEMO_PASSWORD)
    print("ingesting the synthetic demo video ...", flush=True)
    subprocess.run([sys.executable, "-m", "lumenal.cli", "ingest", str(demo / VIDEO_NAME),
                    "--ground-truth", str(demo / GROUND_TRUTH_NAME)], env={**os.environ, **env}, check=True)
    users = ", ".join(f"{n} ({r})" for n, r in DEMO_USERS)
    print(f"\nDemo loaded: {TITLE}.\n  accounts: {users}; password '{DEMO_PASSWORD}'"
          f"\n  admin: 'admin', password in {home / 'admin_password'}"
          "\n  closed loop with simulated annotators: lumenal demo --simulate-oracle", flush=True)
