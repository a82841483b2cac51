"""Inference service against real tansu, real SeaweedFS and a real modelserver process.

Storage is a minimal in-test StorageService (GetFrames/GetFrame over frames
put in the real S3 bucket), so this test depends only on the storage API.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer

from lumenal.core import auth, errors, grpc_server, topics
from lumenal.core.config import from_env
from lumenal.core.events import Publisher, ensure_topics
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.inference import server as inference_server
from lumenal.inference.settings import InferenceSettings
from lumenal.ml import images
from lumenal.ml.model import ModelSpec, build_classifier, export_version
from lumenal.stack.processes import ManagedProcess, free_port, port_open
from lumenal.v1 import (
    common_pb2,
    events_pb2,
    inference_pb2,
    inference_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)

pytestmark = pytest.mark.integration
SECRET = "test-secret"
SPEC = dict(class_names=("informative", "non_informative"), input_size=32, filters=(8, 16),
            embedding_dim=16, mc_samples=5)


class S3Storage(storage_pb2_grpc.StorageServiceServicer):
    """GetFrames/GetFrame over frames in the real S3 bucket (what inference needs from storage)."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def _frame(self, frame_id: str, context: grpc.ServicerContext) -> storage_pb2.Frame:
        auth.require(auth.authenticate(context, SECRET), auth.SERVICE)
        data = self.store.get_bytes(FRAMES_BUCKET, f"{self.prefix}/{frame_id}.png")
        return storage_pb2.Frame(meta=common_pb2.FrameMeta(frame_id=frame_id), image=data)

    def GetFrames(self, request, context):  # noqa: ANN001, ANN201, N802
        for fid in request.frame_ids:
            try:
                yield self._frame(fid, context)
            except errors.NotFound:
                continue  # missing frames are left out of the stream

    def GetFrame(self, request, context):  # noqa: ANN001, ANN201, N802
        return self._frame(request.frame_id, context)


@dataclass
class Env:
    settings: InferenceSettings
    store: ObjectStore
    prefix: str
    base: Path
    publisher: Publisher
    modelserver: ManagedProcess
    tmp: Path

    def put_frames(self, video: str, start: int, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        ids = []
        for i in range(start, start + n):
            fid = f"{video}:{i:06d}"
            img = rng.random((40, 48, 3)).astype(np.float32) * (0.3 if i % 2 else 1.0)
            self.store.put_bytes(FRAMES_BUCKET, f"{self.prefix}/{fid}.png", images.encode_png(img), "image/png")
            ids.append(fid)
        return ids

    def ingest(self, video: str, ids: list[str]) -> None:
        metas = [common_pb2.FrameMeta(frame_id=f, video_id=video) for f in ids]
        self.publisher.publish_sync(topics.FRAMES_INGESTED,
                                    events_pb2.FramesIngested(video_id=video, frames=metas), ids[0])

    def publish_model(self, version: int, seed: int) -> None:
        spec = ModelSpec(**SPEC, name=self.settings.model_name)
        export_version(build_classifier(spec, seed=seed), spec, self.base / self.settings.model_name, version)
        self.publisher.publish_sync(topics.MODELS_PUBLISHED, events_pb2.ModelPublished(
            model_name=self.settings.model_name, version=version, class_names=spec.class_names,
            input_size=spec.input_size, reason="promoted"), self.settings.model_name)


def start_modelserver(tmp: Path, base: Path, port: int) -> ManagedProcess:
    return ManagedProcess(
        "modelserver", [sys.executable, "-m", "lumenal.modelserver"], tmp / f"modelserver-{port}.log",
        env={"LUMENAL_MODELSERVER_ADDR": f"127.0.0.1:{port}", "LUMENAL_MODEL_BASE_PATH": str(base),
             "LUMENAL_MODELSERVER_POLL_S": "0.3", "LUMENAL_MODELSERVER_METRICS_PORT": "0",
             "LUMENAL_MODELSERVER_LATEST_N": "2", "TF_CPP_MIN_LOG_LEVEL": "2"},
        ready=lambda: port_open(port)).start().wait_ready(120)


@pytest.fixture
def env(isolated_infra, object_store: ObjectStore, unique: str, tmp_path: Path) -> Iterator[Env]:  # noqa: ANN001
    ensure_topics(isolated_infra.kafka_bootstrap)
    storage_srv = grpc_server.start("test-storage", 0, [(storage_pb2_grpc.add_StorageServiceServicer_to_server,
                                                          S3Storage(object_store, f"itest/{unique}"),
                                                          "lumenal.v1.StorageService")], metrics_port=-1)
    base = tmp_path / "models"
    base.mkdir()
    ms_port = free_port()
    modelserver = start_modelserver(tmp_path, base, ms_port)
    settings = from_env(InferenceSettings, environ={}, **{
        **{k: getattr(isolated_infra.settings(), k) for k in ("kafka_bootstrap", "s3_endpoint", "s3_access_key",
                                                           "s3_secret_key")},
        "auth_secret": SECRET, "storage_addr": f"127.0.0.1:{storage_srv.port}",
        "modelserver_addr": f"127.0.0.1:{ms_port}", "model_name": f"m{unique}", "group": f"inference-{unique}",
        "instance": unique, "snapshot_path": str(tmp_path / "pool.npz"), "snapshot_interval_s": 2.0,
        "session_timeout_ms": 6000, "model_poll_s": 0.5, "batch_size": 8, "version_wait_s": 8.0})
    publisher = Publisher(settings.kafka_bootstrap)
    env = Env(settings, object_store, f"itest/{unique}", base, publisher, modelserver, tmp_path)
    yield env
    publisher.close()
    env.modelserver.stop()  # a test may have replaced it with a restarted one
    modelserver.stop()
    storage_srv.stop(0)


def wait(check: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def client(svc: inference_server.Service) -> tuple[inference_pb2_grpc.InferenceServiceStub, tuple]:
    ch = grpc_server.channel(f"127.0.0.1:{svc.server.port}")
    return inference_pb2_grpc.InferenceServiceStub(ch), auth.metadata(auth.service_token(SECRET, "test"))


def scored_events(bootstrap: str, model: str) -> list[events_pb2.FramesScored]:
    c = KafkaConsumer(topics.FRAMES_SCORED, bootstrap_servers=bootstrap, group_id=None,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    out = [events_pb2.FramesScored.FromString(r.value) for r in c]
    c.close()
    return [e for e in out if e.model_name == model]


def test_ingest_score_topk_publish_rescore_restart(env: Env, unique: str) -> None:
    video = f"vid{unique}"
    ids = env.put_frames(video, 0, 10, seed=1)
    env.store.put_bytes(FRAMES_BUCKET, f"{env.prefix}/{video}:000010.png", b"\x89PNG not really")  # corrupt
    svc = inference_server.serve(env.settings, port=0, metrics_port=-1)
    try:
        stub, md = client(svc)
        # cold start: frames get thumbnail descriptors; selection is diverse and says so
        env.ingest(video, [*ids, f"{video}:000010", f"{video}:000011"])  # 000011 is missing in storage
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=4, strategy="margin"), metadata=md).pool_size == 10,
             90, "cold-start descriptors for 10 frames")
        cold = stub.TopK(inference_pb2.TopKRequest(k=4, strategy="margin"), metadata=md)
        assert cold.strategy == "kcenter" and cold.model_version == 0 and len(cold.frames) == 4
        assert {f.frame_id for f in cold.frames} <= set(ids)
        assert stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=md).frames == 12

        # first model: the whole pool is scored with version 1, then TopK switches
        env.publish_model(1, seed=1)
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=3, strategy="entropy"), metadata=md).model_version == 1,
             120, "pool scored with version 1")
        top = stub.TopK(inference_pb2.TopKRequest(k=3, strategy="entropy"), metadata=md)
        assert top.strategy == "entropy" and top.pool_size == 10
        ent = [f.entropy for f in top.frames]
        assert ent == sorted(ent, reverse=True) and all(f.model_version == 1 for f in top.frames)
        one = stub.GetScore(inference_pb2.GetScoreRequest(frame_id=ids[0]), metadata=md)
        assert one.model_version == 1 and len(one.probabilities) == 2 and one.bald >= 0

        # new frames are scored with version 1; labeled and leased frames are excluded
        more = env.put_frames(video, 20, 4, seed=2)
        env.ingest(video, more)
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=1), metadata=md).pool_size == 14, 60, "new frames")
        env.publisher.publish_sync(topics.LABELS_RESOLVED, events_pb2.LabelResolved(
            frame_id=ids[0], label="informative"), ids[0])
        wait(lambda: stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=md).labeled == 1, 30, "label")
        allk = stub.TopK(inference_pb2.TopKRequest(k=50, strategy="margin", exclude_frame_ids=[ids[1]]),
                         metadata=md)
        got = {f.frame_id for f in allk.frames}
        assert ids[0] not in got and ids[1] not in got and len(got) == 12

        # a new version: re-score the whole pool, TopK answers from version 1 until it completes
        env.publish_model(2, seed=2)
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=3), metadata=md).model_version == 2, 120, "version 2")
        stats = stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(histogram_bins=4, metric="bald"), metadata=md)
        assert stats.model_version == 2 and not stats.rescore.running and sum(stats.histogram_counts) == 13
        evs = scored_events(env.settings.kafka_bootstrap, env.settings.model_name)
        v2 = {s.frame_id for e in evs if e.model_version == 2 and e.rescore for s in e.scores}
        assert set(ids[1:]) | set(more) <= v2
        assert any(e.model_version == 0 for e in evs) and any(e.model_version == 1 for e in evs)

        # the Rescore RPC needs admin and reports progress
        annot = auth.metadata(auth.issue_token(SECRET, "ann", auth.ANNOTATOR, 60)[0])
        with pytest.raises(grpc.RpcError) as exc:
            stub.Rescore(inference_pb2.RescoreRequest(), metadata=annot)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        st = stub.Rescore(inference_pb2.RescoreRequest(), metadata=md)
        assert st.running and st.model_version == 2 and st.total == 13
        wait(lambda: not stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=md).rescore.running,
             90, "forced rescore")
        before = stub.TopK(inference_pb2.TopKRequest(k=5, strategy="margin"), metadata=md)
    finally:
        svc.stop()

    # restart: the snapshot (plus the replayed tail) restores the pool
    svc = inference_server.serve(env.settings, port=0, metrics_port=-1)
    try:
        stub, md = client(svc)
        assert svc.feed.caught_up.wait(60)
        after = stub.TopK(inference_pb2.TopKRequest(k=5, strategy="margin"), metadata=md)
        assert after.model_version == 2 and after.pool_size == before.pool_size
        assert [f.frame_id for f in after.frames] == [f.frame_id for f in before.frames]
    finally:
        svc.stop()


def health(svc: inference_server.Service) -> int:
    with grpc_server.channel(f"127.0.0.1:{svc.server.port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3).status


def test_modelserver_down_unknown_version_and_poison(env: Env, unique: str) -> None:
    video = f"down{unique}"
    env.publish_model(1, seed=3)
    svc = inference_server.serve(env.settings, port=0, metrics_port=-1)
    try:
        stub, md = client(svc)
        first = env.put_frames(video, 0, 4, seed=3)
        env.ingest(video, first)
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=1), metadata=md).pool_size == 4, 120, "scored v1")
        wait(lambda: health(svc) == health_pb2.HealthCheckResponse.SERVING, 30, "SERVING")

        # model server down: health says so, events wait, nothing is lost
        env.modelserver.stop()
        wait(lambda: health(svc) == health_pb2.HealthCheckResponse.NOT_SERVING, 30, "NOT_SERVING")
        later = env.put_frames(video, 10, 3, seed=4)
        env.ingest(video, later)
        time.sleep(3)
        assert stub.TopK(inference_pb2.TopKRequest(k=1), metadata=md).pool_size == 4
        env.modelserver = start_modelserver(env.tmp, env.base, int(env.settings.modelserver_addr.split(":")[1]))
        wait(lambda: stub.TopK(inference_pb2.TopKRequest(k=1), metadata=md).pool_size == 7, 120, "resumed")
        wait(lambda: health(svc) == health_pb2.HealthCheckResponse.SERVING, 30, "SERVING again")

        # a published version the model server never loads: keep scoring with version 1
        env.publisher.publish_sync(topics.MODELS_PUBLISHED, events_pb2.ModelPublished(
            model_name=env.settings.model_name, version=99), env.settings.model_name)
        wait(lambda: stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=md).rescore.model_version == 99,
             30, "target 99")
        tail = env.put_frames(video, 20, 2, seed=5)
        env.ingest(video, tail)
        wait(lambda: all(stub.GetScore(inference_pb2.GetScoreRequest(frame_id=f), metadata=md).model_version == 1
                         for f in tail), 60, "scored with version 1 after giving up on 99")

        # unknown strategy and bad arguments
        for req, code in [(inference_pb2.TopKRequest(k=3, strategy="nope"), grpc.StatusCode.INVALID_ARGUMENT),
                          (inference_pb2.TopKRequest(k=0), grpc.StatusCode.INVALID_ARGUMENT)]:
            with pytest.raises(grpc.RpcError) as exc:
                stub.TopK(req, metadata=md)
            assert exc.value.code() == code

        # poison events on frames.ingested go to the dead-letter topic with our group
        raw = KafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap)
        raw.send(topics.FRAMES_INGESTED, key=f"poison{unique}".encode(), value=b"\xff\xff not protobuf").get(10)
        bad = events_pb2.FramesIngested(video_id=video, frames=[common_pb2.FrameMeta(frame_id="no-index")])
        raw.send(topics.FRAMES_INGESTED, key=f"badid{unique}".encode(), value=bad.SerializeToString()).get(10)
        raw.close()

        def dead() -> set[str]:
            c = KafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=env.settings.kafka_bootstrap, group_id=None,
                              auto_offset_reset="earliest", consumer_timeout_ms=2000)
            got = {events_pb2.DeadLetter.FromString(r.value).key.decode() for r in c
                   if events_pb2.DeadLetter.FromString(r.value).consumer_group == env.settings.group}
            c.close()
            return got
        wait(lambda: {f"poison{unique}", f"badid{unique}"} <= dead(), 60, "dead letters")
        assert health(svc) == health_pb2.HealthCheckResponse.SERVING
    finally:
        svc.stop()
