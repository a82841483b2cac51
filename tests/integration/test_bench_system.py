"""``lumenal bench system`` wiring: the cheap in-process sections write the contract's JSON keys.

The loop section (a whole embedded stack) is exercised by the benchmark run itself and by the
training area's full-loop test; here it would cost minutes of the shared 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lumenal.bench import cli, system

pytestmark = pytest.mark.integration


def test_mc_and_topk_sections_write_the_json_keys(tmp_path: Path) -> None:
    out = tmp_path / "system.json"
    rc = cli.main(["system", "--only", "mc,topk", "--topk-frames", "20000", "--topk-calls", "3",
                   "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert set(system.KEYS) <= set(doc)
    assert doc["mc_dropout_ratio"] > 0 and doc["topk_p95_ms"] > 0
    assert doc["scoring_ratio"] is None and doc["label_to_serving_s"] is None  # not run: null, never guessed
    assert doc["sections"]["mc"]["ok"] and doc["sections"]["topk"]["ok"]
    assert doc["topk"]["frames"] == 20000


def test_unknown_section_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["system", "--only", "mc,warp-drive"]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_annotators_section_measures_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    """Both databases, invariants checked, the worse p95 is the reported key (tiny and fast here)."""
    admin = pg_url.rsplit("/", 1)[0] + "/postgres"
    out = system.section_annotators(tmp_path, annotators=4, frames=30, think_s=0.0, pg_admin_url=admin)
    runs = out["annotators"]
    assert set(runs) == {"sqlite", "postgresql", "sqlite_saturated"}
    for r in runs.values():
        assert r["problems"] == [], r["problems"]
        # An overlap frame skipped by too many of the 4 annotators stays open: most resolve.
        assert r["resolved"] + r["adjudication"] >= 24 and r["p95_ms"] > 0, r
    assert out["nexttask_p95_ms"] == max(runs["sqlite"]["p95_ms"], runs["postgresql"]["p95_ms"])
