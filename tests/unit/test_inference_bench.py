"""The TopK benchmark runs end to end on a small pool (the 1M-frame numbers are in docs/inference.md)."""

from __future__ import annotations

from lumenal.inference import bench


def test_measure_small_pool_with_churn() -> None:
    out = bench.measure(frames=20_000, calls=5, strategies=("margin", "diverse_margin", "random"), churn=2000)
    assert out["frames"] == 20_000 and out["index_bytes_per_million"] > 0
    for name in ("margin", "diverse_margin", "random"):
        assert 0 < out[name]["p50_ms"] <= out[name]["p95_ms"] and out[name]["cpu_ms"] > 0
    assert out["rank_resorts_while_timing"] >= 0
