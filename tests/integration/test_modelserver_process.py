"""The real ``python -m lumenal.modelserver`` process: serve, hot swap, metrics, shutdown.

No broker or S3 needed: the modelserver's only dependency is its base path.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lumenal.core import errors
from lumenal.core.grpc_server import wait_healthy
from lumenal.ml import model as M
from lumenal.ml.serving import ServingClient
from lumenal.stack.processes import ManagedProcess, free_port, wait_for

pytestmark = pytest.mark.integration

SPEC = M.ModelSpec(class_names=("informative", "non_informative"), input_size=16, filters=(4, 8),
                   embedding_dim=8, mc_samples=5)
NAME = "frame_triage"


def test_modelserver_process_serves_swaps_and_stops(tmp_path: Path) -> None:
    base = tmp_path / "models"
    v1, v2 = M.build_classifier(SPEC, seed=1), M.build_classifier(SPEC, seed=2)
    M.export_version(v1, SPEC, base / NAME, 1)
    port, metrics_port = free_port(), free_port()
    env = {"LUMENAL_MODEL_BASE_PATH": str(base), "LUMENAL_MODELSERVER_ADDR": f"127.0.0.1:{port}",
           "LUMENAL_MODELSERVER_METRICS_PORT": str(metrics_port), "LUMENAL_MODELSERVER_POLL_S": "0.3",
           "KERAS_HOME": os.environ.get("KERAS_HOME", ""), "TF_CPP_MIN_LOG_LEVEL": "2"}
    target = f"127.0.0.1:{port}"
    proc = ManagedProcess("modelserver", [sys.executable, "-m", "lumenal.modelserver"],
                          tmp_path / "modelserver.log", env=env)
    proc.ready = lambda: (wait_healthy(target, timeout_s=1) is None)
    proc.start()
    try:
        proc.wait_ready(120)
        client = ServingClient(target, timeout_s=60, retries=2, backoff_s=0.05)
        x = np.random.default_rng(1).random((6, 16, 16, 3), dtype=np.float32)

        # Outputs match in-process Keras for all three signatures.
        np.testing.assert_allclose(client.predict(NAME, x, version=1)["probabilities"],
                                   v1.predict(x, verbose=0), atol=1e-5)
        np.testing.assert_allclose(client.predict(NAME, x, version=1, signature="embedding")["embedding"],
                                   M.predict_embedding(v1, SPEC, x), atol=1e-5)
        served = client.predict(NAME, x, version=1, signature="mc_dropout")
        local = M.predict_all(v1, SPEC, x)
        for key in M.MC_OUTPUTS:
            np.testing.assert_allclose(served[key], local[key], atol=1e-5)

        # Hot swap while three clients stream Predict calls.
        stop, failures, counts = threading.Event(), [], []

        def stream() -> None:
            n = 0
            with ServingClient(target, timeout_s=60, retries=0) as c:
                while not stop.is_set():
                    try:
                        c.predict(NAME, x, signature="mc_dropout")
                        n += 1
                    except Exception as exc:  # noqa: BLE001 - counted
                        failures.append(repr(exc))
            counts.append(n)

        threads = [threading.Thread(target=stream) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            M.export_version(v2, SPEC, base / NAME, 2)
            wait_for(lambda: client.model_status(NAME) == [(1, "END"), (2, "AVAILABLE")], 120, "swap to v2")
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"process hot swap: {sum(counts)} requests, {len(failures)} failed")
        assert failures == [] and sum(counts) > 0
        np.testing.assert_allclose(client.predict(NAME, x)["probabilities"], v2.predict(x, verbose=0),
                                   atol=1e-5)

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert f'lumenal_modelserver_latest_version{{model="{NAME}"}} 2.0' in metrics
        assert 'lumenal_modelserver_loads_total{model="frame_triage",result="ok"} 2.0' in metrics

        # Graceful stop; then the client retries and reports Unavailable.
        proc.stop()
        assert proc.returncode() == 0, proc.log_tail()
        with pytest.raises(errors.Unavailable):
            client.predict(NAME, x)
        client.close()
    finally:
        proc.stop()
