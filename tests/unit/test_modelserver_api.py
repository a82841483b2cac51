"""The modelserver's TF Serving API in-process: outputs, errors, status, hot swap, reload.

The server runs on a real gRPC port (port 0) and is called through
``lumenal.ml.serving.ServingClient``, the same client the services use.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lumenal.core import errors
from lumenal.core.config import from_env
from lumenal.core.grpc_server import Server
from lumenal.ml import model as M
from lumenal.ml.serving import ServingClient, to_tensor_proto
from lumenal.modelserver.manager import AVAILABLE, END, LOADING, START, UNLOADING, ModelManager
from lumenal.modelserver.server import serve
from lumenal.modelserver.settings import ModelServerSettings

SPEC = M.ModelSpec(class_names=("a", "b", "c"), input_size=16, filters=(4, 8), embedding_dim=8,
                   mc_samples=4)
NAME = "tiny"


@dataclass
class Exports:
    root: Path
    models: dict[int, keras.Model]

    def publish(self, base: Path, version: int, as_version: int | None = None) -> Path:
        """Copy an exported version into ``base/<version>`` the atomic way (temp + rename)."""
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.root / str(version), tmp)
        final = base / str(as_version or version)
        os.replace(tmp, final)
        return final


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    root = tmp_path_factory.mktemp("exports")
    models = {}
    for v in (1, 2):  # two distinct models; later versions reuse these files (export is the slow part)
        models[v] = M.build_classifier(SPEC, seed=v)
        M.export_version(models[v], SPEC, root, v)
    return Exports(root, models)


@dataclass
class Running:
    base: Path
    manager: ModelManager
    client: ServingClient
    target: str


def _start(base: Path, exports: Exports) -> tuple[Running, Server]:
    exports.publish(base / NAME, 1)
    settings = from_env(ModelServerSettings, environ={}, model_base_path=str(base), poll_interval_s=0.2)
    server, manager = serve(settings, port=0, metrics_port=-1)
    target = f"127.0.0.1:{server.port}"
    # Generous deadline: a reload loads versions synchronously, and CI cores are shared.
    client = ServingClient(target, timeout_s=120, retries=2, backoff_s=0.05)
    return Running(base, manager, client, target), server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, exports: Exports) -> Iterator[Running]:
    """One server for the tests that only read (serving v1)."""
    run, server = _start(tmp_path_factory.mktemp("shared"), exports)
    yield run
    run.client.close()
    server.stop(1)


@pytest.fixture
def running(tmp_path: Path, exports: Exports) -> Iterator[Running]:
    """A fresh server for tests that publish versions or reload config."""
    run, server = _start(tmp_path, exports)
    yield run
    run.client.close()
    server.stop(1)


def wait_until(check, timeout_s: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SPEC.input_shape), dtype=np.float32)


def test_outputs_match_in_process_keras_for_every_signature(shared: Running, exports: Exports) -> None:
    x = images()
    clf = exports.models[1]
    np.testing.assert_allclose(shared.client.predict(NAME, x, version=1)["probabilities"],
                               clf.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(shared.client.predict(NAME, x, version=1, signature="embedding")["embedding"],
                               M.predict_embedding(clf, SPEC, x), atol=1e-5)
    served = shared.client.predict(NAME, x, version=1, signature="mc_dropout")
    local = M.predict_all(clf, SPEC, x)
    assert set(served) == set(M.MC_OUTPUTS)
    for key in M.MC_OUTPUTS:
        np.testing.assert_allclose(served[key], local[key], atol=1e-5)


def test_metadata_and_status(shared: Running) -> None:
    meta = shared.client.metadata(NAME)
    assert meta["version"] == 1
    assert set(meta["signatures"]) == set(M.SIGNATURES)
    assert meta["signatures"]["mc_dropout"]["inputs"] == {"images": ("DT_FLOAT", (-1, 16, 16, 3))}
    assert meta["signatures"]["embedding"]["outputs"]["embedding"] == ("DT_FLOAT", (-1, 8))
    assert shared.client.model_status(NAME) == [(1, "AVAILABLE")]
    assert shared.client.latest_version(NAME) == 1
    assert shared.client.latest_version("nope") is None


def _raw_predict(target: str, request: predict_pb2.PredictRequest) -> grpc.RpcError:
    with grpc.insecure_channel(target) as ch, pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(request, timeout=10)
    return info.value


@pytest.mark.parametrize(("mutate", "code", "message"), [
    (lambda r: r.inputs["images"].CopyFrom(to_tensor_proto(np.zeros((2, 8, 8, 3), np.float32))),
     grpc.StatusCode.INVALID_ARGUMENT, "expects [?, 16, 16, 3]"),
    (lambda r: r.inputs["images"].CopyFrom(to_tensor_proto(np.zeros((2, 16, 16), np.float32))),
     grpc.StatusCode.INVALID_ARGUMENT, "has shape"),
    (lambda r: r.inputs["images"].CopyFrom(to_tensor_proto(np.zeros((2, 16, 16, 3), np.float64))),
     grpc.StatusCode.INVALID_ARGUMENT, "to be float32 but float64"),
    (lambda r: r.inputs["pixels"].CopyFrom(to_tensor_proto(np.zeros((2, 16, 16, 3), np.float32))),
     grpc.StatusCode.INVALID_ARGUMENT, "alias not found"),
    (lambda r: r.inputs.clear(), grpc.StatusCode.INVALID_ARGUMENT, "Missing input"),
    (lambda r: r.model_spec.version.__setattr__("value", 42), grpc.StatusCode.NOT_FOUND, "Specific(tiny, 42)"),
    (lambda r: r.model_spec.__setattr__("name", "ghost"), grpc.StatusCode.NOT_FOUND, "Latest(ghost)"),
    (lambda r: r.model_spec.__setattr__("signature_name", "explain"),
     grpc.StatusCode.FAILED_PRECONDITION, 'signature key "explain" not found'),
    (lambda r: r.model_spec.__setattr__("version_label", "stable"),
     grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label"),
    (lambda r: r.output_filter.append("logits"), grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias"),
])
def test_bad_requests_get_tf_serving_status_codes(shared: Running, mutate, code, message) -> None:  # noqa: ANN001
    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.inputs["images"].CopyFrom(to_tensor_proto(images(2)))
    mutate(req)
    err = _raw_predict(shared.target, req)
    assert err.code() == code
    assert message in err.details()
    # The server is still fine afterwards.
    assert shared.client.predict(NAME, images(1))["probabilities"].shape == (1, 3)


def test_client_maps_errors_to_service_errors(shared: Running) -> None:
    with pytest.raises(errors.NotFound):
        shared.client.predict(NAME, images(1), version=9)
    with pytest.raises(errors.InvalidArgument):
        shared.client.predict(NAME, np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(errors.NotFound):
        shared.client.model_status("ghost")


def test_output_filter_limits_outputs(shared: Running) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.model_spec.signature_name = "mc_dropout"
    req.inputs["images"].CopyFrom(to_tensor_proto(images(2)))
    req.output_filter.append("bald")
    with grpc.insecure_channel(shared.target) as ch:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=10)
    assert list(resp.outputs) == ["bald"]
    assert resp.model_spec.version.value == 1 and resp.model_spec.signature_name == "mc_dropout"


def test_hot_swap_under_concurrent_predicts_fails_no_request(running: Running, exports: Exports) -> None:
    x = images(4)
    stop = threading.Event()
    failures: list[str] = []
    seen: list[list[int]] = [[] for _ in range(4)]

    def hammer(i: int) -> None:
        with ServingClient(running.target, timeout_s=60, retries=0) as c:
            while not stop.is_set():
                try:
                    version, out = c.predict_versioned(NAME, x, signature="mc_dropout")
                    assert out["probabilities"].shape == (4, 3)
                    seen[i].append(version)
                except Exception as exc:  # noqa: BLE001 - counted
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        exports.publish(running.base / NAME, 2)
        wait_until(lambda: running.client.model_status(NAME) == [(1, "END"), (2, "AVAILABLE")])
        time.sleep(0.5)
        exports.publish(running.base / NAME, 1, as_version=3)
        wait_until(lambda: running.client.model_status(NAME)[-1] == (3, "AVAILABLE"))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    total = sum(len(s) for s in seen)
    print(f"hot swap: {total} requests, {len(failures)} failed")
    assert failures == []
    assert total > 0
    assert {1, 2, 3} <= set().union(*map(set, seen))
    for s in seen:  # a client never goes back to an older version
        assert s == sorted(s)
    assert running.client.model_status(NAME) == [(1, "END"), (2, "END"), (3, "AVAILABLE")]
    hist = [state for (m, v, state) in running.manager.history if (m, v) == (NAME, 2)]
    assert hist == [START, LOADING, AVAILABLE, UNLOADING, END]
    # Old version loaded+warmed before unload: v3 AVAILABLE precedes v2 UNLOADING.
    order = list(running.manager.history)
    assert order.index((NAME, 3, AVAILABLE)) < order.index((NAME, 2, UNLOADING))


def test_half_written_and_corrupt_versions_are_reported_and_never_block(running: Running,
                                                                        exports: Exports) -> None:
    half = running.base / NAME / "5"
    shutil.copytree(exports.root / "2" / "variables", half / "variables")  # no saved_model.pb yet
    corrupt = running.base / NAME / "6"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"\x00garbage")
    wait_until(lambda: dict(running.client.model_status(NAME)).get(6) == "END")
    statuses = {s.version: s for s in running.client.version_statuses(NAME)}
    assert statuses[5].state == "END" and "no saved_model.pb" in statuses[5].error_message
    assert statuses[6].state == "END" and statuses[6].error_code != 0
    assert statuses[1].state == "AVAILABLE"  # still serving the good version
    assert running.client.predict(NAME, images(1))["probabilities"].shape == (1, 3)
    exports.publish(running.base / NAME, 1, as_version=7)  # a later good version loads
    wait_until(lambda: running.client.latest_version(NAME) == 7)
    assert dict(running.client.model_status(NAME))[1] == "END"
    # Completing the half-written folder makes it loadable again (its files changed).
    shutil.copy(exports.root / "2" / "saved_model.pb", half / "saved_model.pb")
    running.client.reload_config([{"name": NAME, "base_path": running.base / NAME, "all": True}])
    assert running.manager.available(NAME) == [1, 5, 7]  # "all": every loadable version, not corrupt 6


def test_reload_config_changes_served_models_and_labels(running: Running, exports: Exports,
                                                        tmp_path: Path) -> None:
    exports.publish(running.base / NAME, 2)
    wait_until(lambda: running.client.latest_version(NAME) == 2)
    running.client.reload_config([{"name": NAME, "base_path": running.base / NAME, "versions": [1, 2],
                                   "version_labels": {"stable": 1, "canary": 2}}])
    assert running.client.model_status(NAME)[-2:] == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    x = images(2)
    np.testing.assert_allclose(running.client.predict(NAME, x, version_label="stable")["probabilities"],
                               exports.models[1].predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(running.client.predict(NAME, x, version_label="canary")["probabilities"],
                               exports.models[2].predict(x, verbose=0), atol=1e-5)
    assert running.client.predict_versioned(NAME, x)[0] == 2  # no version: the latest
    with pytest.raises(errors.FailedPrecondition, match="available"):
        running.client.reload_config([{"name": NAME, "base_path": running.base / NAME, "latest": 1,
                                       "version_labels": {"stable": 1}}])
    # Swap the served set for another model entirely.
    other = tmp_path / "other_models" / "other"
    exports.publish(other, 2, as_version=3)
    running.client.reload_config([{"name": "other", "base_path": other}])
    assert running.client.latest_version("other") == 3
    assert running.client.latest_version(NAME) is None
    assert {v: s for v, s in running.client.model_status(NAME)} == {1: "END", 2: "END"}
    with pytest.raises(errors.NotFound):
        running.client.predict(NAME, x)


def test_unload_waits_for_in_flight_requests(running: Running, exports: Exports) -> None:
    def state(v: int) -> str | None:
        return dict(running.client.model_status(NAME)).get(v)

    with running.manager.acquire(NAME, 1, None) as held:
        assert held.version == 1
        exports.publish(running.base / NAME, 2)
        wait_until(lambda: state(1) == "UNLOADING")
        assert state(2) == "AVAILABLE"
        # While v1 drains, new requests already go to v2 and v1 is no longer addressable.
        assert running.client.predict_versioned(NAME, images(1))[0] == 2
        with pytest.raises(errors.NotFound):
            running.client.predict(NAME, images(1), version=1)
        time.sleep(0.3)
        assert state(1) == "UNLOADING"  # still waiting for the held request
    wait_until(lambda: state(1) == "END")


def test_missing_base_path_keeps_serving(running: Running) -> None:
    model_dir = running.base / NAME
    running.client.reload_config([{"name": NAME, "base_path": model_dir}])
    model_dir.rename(running.base / ".unmounted")
    running.manager.reconcile()  # a full poll with the folder gone
    assert running.client.model_status(NAME) == [(1, "AVAILABLE")]
    assert running.client.predict_versioned(NAME, images(1))[0] == 1
