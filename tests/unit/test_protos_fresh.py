"""The committed stubs in services/v1 are what proto/generate.py produces now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = {p.name: p.read_bytes() for p in gen.generate(tmp_path / "v1")}
    fresh["__init__.py"] = (tmp_path / "v1" / "__init__.py").read_bytes()
    committed = {p.name: p.read_bytes() for p in (ROOT / "services" / "v1").iterdir() if p.is_file()}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"stale generated stubs {stale}: run `make protos` and commit"
