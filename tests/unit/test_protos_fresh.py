"""The committed stubs in services/v1 are what proto/generate.py produces now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    # A separate process: protoc inside a process that already loaded TensorFlow's
    # protobuf runtime can crash it.
    out = tmp_path / "v1"
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), str(out)], check=True)
    fresh = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in (ROOT / "services" / "v1").iterdir() if p.is_file()}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"stale generated stubs {stale}: run `make protos` and commit"
