"""``lumenal bench al --quick`` end to end, made tinier still: it must complete and write
valid JSON and a PNG. No numbers are asserted (those are the benchmark's job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lumenal.bench import cli, data

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_bench_writes_json_and_png(tmp_path: Path) -> None:
    if not (data.FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist")
    out, png = tmp_path / "al.json", tmp_path / "al.png"
    rc = cli.main(["al", "--quick", "--budget", "200", "--pool-size", "2000", "--test-size", "500",
                   "--candidates", "400", "--mc-samples", "3", "--min-steps", "10", "--no-progress",
                   "--workers", "2",  # the parallel path: spawned workers stream rounds back
                   "--strategies", "random,diverse_margin,modal_uncertainty",
                   "--json", str(out), "--plot", str(png)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert set(doc["strategies"]) == {"random", "diverse_margin", "modal_uncertainty"}
    assert {r["strategy"] for r in doc["runs"]} == set(doc["strategies"])
    assert doc["comparison"]["best_lumenal"] == "diverse_margin"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
