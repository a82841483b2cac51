"""The training service as a real process among real ones: triggers, coalescing, the
validation gate, faults (NaN loss, a corrupt frame, a crash mid-run), rollback, bad input.

One stack for the module (modelserver, storage, labels, training on SeaweedFS
and tansu); each test restarts only the training process with the settings
it needs. Tests run in file order and build on the versions before them.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from lumenal.core import auth
from lumenal.core.config import from_env
from lumenal.core.grpc_server import wait_healthy
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.demo import loop
from lumenal.ml.serving import ServingClient
from lumenal.stack.components import BY_NAME
from lumenal.stack.processes import ManagedProcess
from lumenal.stack.supervisor import Stack, StackSettings
from lumenal.storage import packs
from lumenal.v1 import labels_pb2, storage_pb2, training_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABELS = 60
BASE_ENV = {
    "LUMENAL_LABELS_CLASS_NAMES": "informative,bubbles,blur,dark,debris",
    "LUMENAL_LABELS_OVERLAP_FRACTION": "0",
    "LUMENAL_LABELS_INFERENCE_RETRY_S": "600",   # no inference here: ingest order
    "LUMENAL_TRAINING_RETRAIN_EVERY": "100000",  # only manual triggers in this module
    "LUMENAL_TRAINING_MIN_LABELS": "20",
    "LUMENAL_TRAINING_EPOCHS": "8",
    "LUMENAL_TRAINING_PATIENCE": "3",
    "LUMENAL_MODELSERVER_POLL_S": "0.5",
    "LUMENAL_STORAGE_SAMPLE_FPS": "-1",
    "LUMENAL_STORAGE_DEDUP_THRESHOLD": "0",
}
DONE = (training_pb2.RUN_STATE_PROMOTED, training_pb2.RUN_STATE_REJECTED, training_pb2.RUN_STATE_FAILED)


class Env:
    """The running stack plus clients and a way to restart training with other settings."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.clients = loop.Clients(loop.settings_from_env())
        self.md = self.clients.md
        self.training = self.clients.training
        self.serving = ServingClient(self.clients.settings.modelserver_addr, timeout_s=10)
        self.store = ObjectStore.from_settings(self.clients.settings)
        self.addr = self.clients.settings.training_addr

    def restart_training(self, **overrides: str) -> None:
        run = self.stack.running["training"]
        run.proc.stop()
        env = {**self.stack.child_env(BY_NAME["training"]), **{f"LUMENAL_TRAINING_{k.upper()}": v
                                                             for k, v in overrides.items()}}
        run.proc = ManagedProcess("training", [sys.executable, "-m", "lumenal.training"],
                                  run.proc.log_path, env=env).start()
        wait_healthy(self.addr, 120)

    def kill_training(self) -> None:
        os.killpg(self.stack.running["training"].proc.pid, signal.SIGKILL)
        self.stack.running["training"].proc.popen.wait(10)

    def status(self) -> training_pb2.TrainingStatus:
        return self.training.GetStatus(training_pb2.GetStatusRequest(), metadata=self.md, timeout=10)

    def runs(self) -> list[training_pb2.TrainingRun]:
        return list(self.training.ListRuns(training_pb2.ListRunsRequest(), metadata=self.md, timeout=10).runs)

    def trigger(self, reason: str) -> training_pb2.TriggerRetrainResponse:
        return self.training.TriggerRetrain(training_pb2.TriggerRetrainRequest(reason=reason),
                                            metadata=self.md, timeout=10)

    def wait_run(self, run_id: str, timeout_s: float = 240) -> training_pb2.TrainingRun:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for run in self.runs():
                if run.run_id == run_id and run.state in DONE:
                    return run
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish")

    def wait_idle(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status()
            if not st.HasField("current") and not st.pending:
                return
            time.sleep(0.5)
        raise TimeoutError("training did not become idle")

    def models(self) -> training_pb2.ListModelsResponse:
        return self.training.ListModels(training_pb2.ListModelsRequest(), metadata=self.md, timeout=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("training-stack")
    saved = dict(os.environ)
    os.environ.update({**BASE_ENV, "LUMENAL_HOME": str(home)})
    stack = Stack(home, from_env(StackSettings), free_ports=True, with_ui=False,
                  only=["modelserver", "storage", "labels", "training"])
    e = None
    try:
        stack.start()
        os.environ.update(stack.client_env())
        e = Env(stack)
        with tempfile.TemporaryDirectory() as tmp:
            loop.ingest_demo_video(e.clients, 200, 64, Path(tmp), progress=False)
        deadline = time.monotonic() + 120
        while e.clients.labels.GetStats(labels_pb2.GetStatsRequest(), metadata=e.md).frames < 150:
            assert time.monotonic() < deadline, "labels never saw the ingested frames"
            time.sleep(0.5)
        assert loop.Oracle(e.clients).setup().label(LABELS, progress=False) == LABELS
        yield e
    finally:
        if e is not None:
            e.clients.close()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def _code(fn) -> grpc.StatusCode:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def test_bad_requests_get_clear_statuses(env: Env):
    t = env.training
    assert _code(lambda: t.GetStatus(training_pb2.GetStatusRequest(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    forged = auth.metadata(auth.issue_token("wrong-secret", "eve", auth.ADMIN, 60)[0])
    assert _code(lambda: t.ListRuns(training_pb2.ListRunsRequest(), metadata=forged, timeout=10)) \
        == grpc.StatusCode.UNAUTHENTICATED
    annotator = auth.metadata(auth.issue_token(env.clients.settings.auth_secret, "ann", auth.ANNOTATOR, 60)[0])
    assert _code(lambda: t.TriggerRetrain(training_pb2.TriggerRetrainRequest(), metadata=annotator, timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: t.Rollback(training_pb2.RollbackRequest(version=1), metadata=annotator, timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert t.GetStatus(training_pb2.GetStatusRequest(), metadata=annotator, timeout=10).serving_version == 0
    assert _code(lambda: t.Rollback(training_pb2.RollbackRequest(version=0), metadata=env.md, timeout=10)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: t.Rollback(training_pb2.RollbackRequest(version=99), metadata=env.md, timeout=10)) \
        == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: t.ListRuns(training_pb2.ListRunsRequest(limit=-1), metadata=env.md, timeout=10)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: env.trigger("x" * 501)) == grpc.StatusCode.INVALID_ARGUMENT


def test_first_run_promotes_and_requests_during_a_run_coalesce(env: Env):
    first = env.trigger("first")
    assert first.accepted and not first.coalesced and first.run_id
    deadline = time.monotonic() + 60
    while not env.status().HasField("current"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second, third = env.trigger("during 1"), env.trigger("during 2")
    assert second.coalesced and third.coalesced and second.run_id == third.run_id != first.run_id
    assert env.status().pending
    run = env.wait_run(first.run_id)
    assert run.state == training_pb2.RUN_STATE_PROMOTED, run.error
    assert run.version == 1 and run.train_labels + run.val_labels == LABELS and run.val_labels > 0
    assert 0 <= run.metrics["macro_f1"] <= 1 and "f1/informative" in run.metrics and run.epochs > 0
    follow = env.wait_run(second.run_id)
    assert follow.state in (training_pb2.RUN_STATE_PROMOTED, training_pb2.RUN_STATE_REJECTED), follow.error
    assert follow.warm_start_from == 1 and follow.compared_with_version == 1
    env.wait_idle()
    assert len(env.runs()) == 2  # three requests, one run plus ONE coalesced follow-up
    assert env.serving.latest_version(env.clients.settings.model_name) == env.models().serving_version >= 1


def _serving_unchanged_after(env: Env, expect: int, **settings: str) -> training_pb2.TrainingRun:
    """Run one retrain with ``settings``; check that nothing was published."""
    before = env.models()
    env.restart_training(**settings)
    resp = env.trigger(f"fault: {settings}")
    run = env.wait_run(resp.run_id)
    assert run.state == expect, (run.state, run.error)
    after = env.models()
    assert [m.version for m in after.models] == [m.version for m in before.models]
    assert env.serving.latest_version(env.clients.settings.model_name) == before.serving_version
    last = env.status().last
    assert last.run_id == run.run_id and last.error == run.error
    return run


def test_nan_loss_fails_the_run_and_keeps_the_serving_model(env: Env):
    run = _serving_unchanged_after(env, training_pb2.RUN_STATE_FAILED, learning_rate="1e10")
    assert "NaN" in run.error


def test_worse_model_is_rejected(env: Env):
    # A negative tolerance demands an improvement no candidate can show (macro-F1 +2).
    run = _serving_unchanged_after(env, training_pb2.RUN_STATE_REJECTED, promotion_tolerance="-2")
    assert "worse" in run.error and "serving_macro_f1" in run.metrics and run.gate


def test_corrupt_frame_fails_the_run_naming_the_frame(env: Env):
    labelled = env.clients.labels.ListResolved(labels_pb2.ListResolvedRequest(), metadata=env.md).labels
    frame_id = labelled[0].frame_id
    meta = env.clients.storage.GetFrame(storage_pb2.GetFrameRequest(frame_id=frame_id), metadata=env.md).meta
    key, header, _ = packs.PackReader(env.store).entry(meta.video_id, meta.frame_index)
    original = env.store.get_bytes(FRAMES_BUCKET, key)
    frames = [(e.meta, original[e.start:e.end]) for _, e in sorted(header.entries.items())]
    broken = [(m, b"\xff\xd8 garbage, not an image" if m.frame_id == frame_id else data) for m, data in frames]
    env.store.put_bytes(FRAMES_BUCKET, key, packs.build(broken), packs.CONTENT_TYPE)
    try:
        run = _serving_unchanged_after(env, training_pb2.RUN_STATE_FAILED)
        assert frame_id in run.error and "cannot decode" in run.error
    finally:
        env.store.put_bytes(FRAMES_BUCKET, key, original, packs.CONTENT_TYPE)


def test_crash_mid_run_loses_nothing_and_resumes_the_coalesced_request(env: Env):
    env.restart_training(epochs="400", patience="400")
    resp = env.trigger("long run")
    deadline = time.monotonic() + 60
    while env.status().current.state != training_pb2.RUN_STATE_RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert env.trigger("while running").coalesced
    time.sleep(3)
    env.kill_training()  # SIGKILL mid-run: no chance to clean up
    env.restart_training()
    interrupted = env.wait_run(resp.run_id, 30)
    assert interrupted.state == training_pb2.RUN_STATE_FAILED and "interrupted" in interrupted.error
    env.wait_idle()
    resumed = env.runs()[0]
    assert resumed.run_id != resp.run_id and resumed.state != training_pb2.RUN_STATE_FAILED, resumed.error
    assert resumed.train_labels + resumed.val_labels == LABELS  # every label re-read from the labels service
    assert env.status().labels_seen == LABELS


def test_rollback_republishes_an_earlier_version_as_the_newest(env: Env):
    before = env.models()
    newest = before.serving_version
    rolled = env.training.Rollback(training_pb2.RollbackRequest(version=1), metadata=env.md, timeout=120)
    assert rolled.version == newest + 1 and rolled.rollback_of == 1 and rolled.reason == "rollback"
    assert rolled.serving and dict(rolled.metrics) == dict(before.models[0].metrics)
    assert env.serving.latest_version(env.clients.settings.model_name) == rolled.version
    after = env.models()
    assert after.serving_version == rolled.version and [m.serving for m in after.models][-1]
    assert _code(lambda: env.training.Rollback(training_pb2.RollbackRequest(version=rolled.version),
                                               metadata=env.md, timeout=30)) == grpc.StatusCode.FAILED_PRECONDITION
