"""The whole active-learning loop on the embedded stack, every component a real process.

SeaweedFS, tansu, modelserver, storage, labels, inference and training run
as ``lumenal up`` runs them. The SYNTHETIC demo video is ingested, frames are
scored, simulated annotators label the top-k over gRPC, the every-N-labels
policy triggers a retrain, the new version is validated, published and
hot-swapped while a Predict loop counts failures, the pool is re-scored with
it, and the learning curve is readable from ListRuns/ListModels.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from lumenal.core.config import from_env
from lumenal.demo import loop
from lumenal.stack.supervisor import Stack, StackSettings
from lumenal.v1 import inference_pb2, labels_pb2, training_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 240
PER_ROUND = 40

# Small and fast: 64 px frames, few epochs, a retrain every 40 labels, no waiting between runs.
ENV = {
    "LUMENAL_LABELS_CLASS_NAMES": "informative,bubbles,blur,dark,debris",
    "LUMENAL_LABELS_OVERLAP_FRACTION": "0",
    "LUMENAL_TRAINING_RETRAIN_EVERY": str(PER_ROUND),
    "LUMENAL_TRAINING_MIN_INTERVAL_S": "0",
    "LUMENAL_TRAINING_MIN_LABELS": "20",
    "LUMENAL_TRAINING_EPOCHS": "12",
    "LUMENAL_TRAINING_PATIENCE": "3",
    # The gate's verdicts are tested in test_training_service; here every
    # validated candidate must go live so the swap itself is exercised.
    "LUMENAL_TRAINING_PROMOTION_TOLERANCE": "1.0",
    "LUMENAL_MODELSERVER_POLL_S": "0.5",
    "LUMENAL_INFERENCE_MODEL_POLL_S": "1",
    "LUMENAL_STORAGE_SAMPLE_FPS": "-1",
    "LUMENAL_STORAGE_DEDUP_THRESHOLD": "0",
}


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for k, v in {**ENV, "LUMENAL_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    st = Stack(tmp_path, from_env(StackSettings), free_ports=True, with_ui=False)
    try:
        st.start()
        for k, v in st.client_env().items():
            monkeypatch.setenv(k, v)
        yield st
    finally:
        st.stop()


def _wait(check, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def test_full_active_learning_loop(stack: Stack, tmp_path: Path):
    clients = loop.Clients(loop.settings_from_env())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            loop.ingest_demo_video(clients, FRAMES, 64, Path(tmp), progress=False)
        frames = loop.pool_size(clients)
        assert frames > 100
        _wait(lambda: clients.labels.GetStats(labels_pb2.GetStatsRequest(), metadata=clients.md).frames >= frames,
              120, "labels saw the ingested frames")
        _wait(lambda: clients.inference.GetPoolStats(inference_pb2.GetPoolStatsRequest(),
                                                     metadata=clients.md).frames >= frames, 120, "pool filled")
        oracle = loop.Oracle(clients, annotators=3).setup()

        # Round 1: 40 labels -> the policy triggers -> v1 (nothing served before: promoted).
        first = loop.run_round(clients, oracle, 1, PER_ROUND, "auto", 300, progress=False)
        assert first.state == "PROMOTED", first
        assert first.version >= 1 and 0.0 <= first.macro_f1 <= 1.0
        runs = clients.training.ListRuns(training_pb2.ListRunsRequest(), metadata=clients.md).runs
        assert runs[0].reason == "labels" and runs[0].trigger_label_frame_id

        # Round 2 through the user-facing command, with Predict running throughout the swap.
        probe = loop.PredictProbe(clients.settings.modelserver_addr, clients.settings.model_name).start()
        out = tmp_path / "demo.json"
        assert loop.main(["--simulate-oracle", "--rounds", "1", "--labels-per-round", str(PER_ROUND),
                          "--timeout", "300", "--json", str(out)]) == 0
        time.sleep(1.0)
        probe.stop()
        second = json.loads(out.read_text())["rounds"][0]
        assert second["state"] == "PROMOTED" and second["version"] == first.version + 1, second
        assert probe.failed == 0, probe.errors[:3]
        assert probe.ok > 0 and {first.version, second["version"]} <= probe.versions

        # The pool was re-scored with the new version; the learning curve is in the registry.
        stats = clients.inference.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=clients.md)
        assert stats.model_version == second["version"] and stats.scored >= frames - 2 * PER_ROUND
        models = clients.training.ListModels(training_pb2.ListModelsRequest(), metadata=clients.md)
        assert models.serving_version == second["version"]
        assert [m.version for m in models.models] == [first.version, second["version"]]
        assert all("macro_f1" in m.metrics for m in models.models)
        curve = loop.learning_curve(clients)
        assert [c["labels"] for c in curve] == sorted(c["labels"] for c in curve)
        assert curve[-1]["labels"] > curve[0]["labels"]
        status = clients.training.GetStatus(training_pb2.GetStatusRequest(), metadata=clients.md)
        assert status.serving_version == second["version"] and status.labels_seen >= 2 * PER_ROUND
    finally:
        clients.close()
